package lockdown_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/lockdown"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

func TestDecodeResponse(t *testing.T) {
	enc := func(v any) []byte {
		b, err := plistconn.Marshal(v, plistconn.XML)
		require.NoError(t, err)
		return b
	}
	r, err := lockdown.DecodeResponse(enc(map[string]any{"Request": "GetValue", "Value": "17.5.1"}), "GetValue")
	require.NoError(t, err)
	assert.Equal(t, "17.5.1", r.Value)

	_, err = lockdown.DecodeResponse(enc(map[string]any{"Request": "Pair", "Error": "UserDeniedPairing"}), "Pair")
	assert.ErrorIs(t, err, lockdown.ErrUserDeniedPairing)
	assert.Equal(t, "lockdown: Pair: UserDeniedPairing", err.Error())

	// Old iOS: Result Failure is an error even without Error (§2.2).
	_, err = lockdown.DecodeResponse(enc(map[string]any{"Request": "StartSession", "Result": "Failure"}), "StartSession")
	var le *lockdown.Error
	require.True(t, errors.As(err, &le))
	assert.Equal(t, "Failure", le.Code)
	assert.NotEmpty(t, le.Hint())

	_, err = lockdown.DecodeResponse(enc(map[string]any{"Request": "GetValue"}), "StartSession")
	assert.ErrorContains(t, err, "echoes")
	// Unpair: echo not checked (pitfall 24).
	_, err = lockdown.DecodeResponse(enc(map[string]any{"Request": "ValidatePair"}), "")
	assert.NoError(t, err)

	_, err = lockdown.DecodeResponse([]byte("not a plist"), "GetValue")
	assert.Error(t, err)

	// errors.Is matches by code across requests, and by request when given.
	e := &lockdown.Error{Request: "StartSession", Code: "InvalidHostID"}
	assert.ErrorIs(t, e, lockdown.ErrInvalidHostID)
	assert.ErrorIs(t, e, &lockdown.Error{Request: "StartSession", Code: "InvalidHostID"})
	assert.NotErrorIs(t, e, &lockdown.Error{Request: "Pair", Code: "InvalidHostID"})
}

func TestRecordConnStopsAtRecordBoundary(t *testing.T) {
	// Bytes after a TLS record must stay on the socket (pitfall 23).
	var buf bytes.Buffer
	buf.Write([]byte{0x17, 0x03, 0x03, 0x00, 0x03, 'a', 'b', 'c'})
	buf.WriteString("PLAINTEXT")
	a, b := net.Pipe()
	go func() {
		_, _ = a.Write(buf.Bytes())
		a.Close()
	}()
	rc := lockdown.NewRecordConn(b)
	got := make([]byte, 100)
	n, err := io.ReadFull(io.LimitReader(rc, 8), got[:8])
	require.NoError(t, err)
	assert.Equal(t, 8, n)
	assert.False(t, rc.Buffered())
	rest, err := io.ReadAll(b)
	require.NoError(t, err)
	assert.Equal(t, "PLAINTEXT", string(rest))
}

func TestRecordConnUnderTLS(t *testing.T) {
	// A full TLS exchange through RecordConn on both sides, then plaintext.
	cert, err := tls.X509KeyPair(selfSigned(t))
	require.NoError(t, err)
	c1, c2 := net.Pipe()
	done := make(chan error, 1)
	go func() {
		s := tls.Server(lockdown.NewRecordConn(c2), &tls.Config{Certificates: []tls.Certificate{cert}})
		b := make([]byte, 5)
		if _, err := io.ReadFull(s, b); err != nil {
			done <- err
			return
		}
		_, err := s.Write(b)
		done <- err
	}()
	cl := tls.Client(lockdown.NewRecordConn(c1), &tls.Config{InsecureSkipVerify: true})
	_, err = cl.Write([]byte("hello"))
	require.NoError(t, err)
	b := make([]byte, 5)
	_, err = io.ReadFull(cl, b)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	require.NoError(t, <-done)
	c1.Close()
	c2.Close()
}

func selfSigned(t *testing.T) ([]byte, []byte) {
	t.Helper()
	pub := lockdown.EncodeDevicePublicKey(&testKeys(t)[0].PublicKey)
	rec, err := lockdown.GenerateRecord(pub, "B", fixedNow, keyGen(t))
	require.NoError(t, err)
	return rec.RootCertificate, rec.RootPrivateKey
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add([]byte(`<?xml version="1.0"?><plist version="1.0"><dict><key>Request</key><string>Pair</string><key>Error</key><string>PasswordProtected</string></dict></plist>`), "Pair")
	f.Add([]byte(`<?xml version="1.0"?><plist version="1.0"><dict><key>Request</key><string>StartService</string><key>Port</key><integer>49152</integer><key>EnableServiceSSL</key><true/></dict></plist>`), "StartService")
	f.Add([]byte("bplist00\xd1\x01\x02WRequestXGetValue\x08\x0b\x13\x00\x00\x00\x00\x00\x00\x01\x01\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x1c"), "")
	f.Fuzz(func(t *testing.T, b []byte, want string) {
		r, err := lockdown.DecodeResponse(b, want)
		if err == nil && want != "" {
			assert.Equal(t, want, r.Request)
		}
	})
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`<?xml version="1.0"?><plist version="1.0"><dict><key>Request</key><string>Pair</string><key>PairRecord</key><dict><key>HostID</key><string>X</string></dict></dict></plist>`))
	f.Add(make([]byte, 16))
	f.Add(func() []byte { b := make([]byte, 64); _, _ = rand.Read(b); return append([]byte("bplist00"), b...) }())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := lockdown.DecodeRequest(b)
		if err != nil {
			return
		}
		// What decodes must encode again.
		_, err = plistconn.Marshal(r, plistconn.XML)
		_ = err
	})
}

// FuzzRecordConn feeds arbitrary bytes through a RecordConn: it never
// returns more than it was given and never reads past a record's end.
func FuzzRecordConn(f *testing.F) {
	f.Add([]byte{0x17, 0x03, 0x03, 0x00, 0x02, 'h', 'i', 'P'})
	f.Add([]byte{0x15, 0x03, 0x01, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		go func() {
			_, _ = a.Write(in)
			a.Close()
		}()
		out, _ := io.ReadAll(lockdown.NewRecordConn(b))
		b.Close()
		if len(out) > len(in) || !bytes.Equal(out, in[:len(out)]) {
			t.Fatalf("RecordConn returned %d bytes that are not a prefix of the input", len(out))
		}
	})
}
