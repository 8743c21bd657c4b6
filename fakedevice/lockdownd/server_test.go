package lockdownd

import (
	"context"
	"crypto/rsa"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ibackup/ibackup/lockdown"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const udid = "00008110-001E2D3C4B5A6978"

var (
	keyOnce sync.Once
	keys    [2]*rsa.PrivateKey
)

// testKeys are generated once: RSA-2048 under -race is slow.
func testKeys(t *testing.T) [2]*rsa.PrivateKey {
	t.Helper()
	keyOnce.Do(func() {
		for i := range keys {
			k, err := lockdown.GenerateKey()
			if err != nil {
				return
			}
			keys[i] = k
		}
	})
	require.NotNil(t, keys[1])
	return keys
}

func newServer(t *testing.T, mod func(*Config)) *Server {
	t.Helper()
	cfg := Config{
		Values:    ExampleValues(udid),
		Domains:   ExampleDomains(),
		StatePath: filepath.Join(t.TempDir(), "lockdownd.plist"),
		DeviceKey: testKeys(t)[0],
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// pairRequest builds a Pair request for the device key pub.
func pairRequest(t *testing.T, pub []byte) *lockdown.Request {
	t.Helper()
	k := testKeys(t)[1]
	rec, err := lockdown.GenerateRecord(pub, "BUID", time.Now(), func() (*rsa.PrivateKey, error) { return k, nil })
	require.NoError(t, err)
	return &lockdown.Request{
		Request: "Pair", ProtocolVersion: "2",
		PairRecord: &lockdown.PairRecordMsg{
			DeviceCertificate: rec.DeviceCertificate, HostCertificate: rec.HostCertificate,
			RootCertificate: rec.RootCertificate, SystemBUID: rec.SystemBUID, HostID: rec.HostID,
		},
		PairingOptions: &lockdown.PairingOptions{ExtendedPairingErrors: true},
	}
}

func TestStatePersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "phone", "lockdownd.plist")
	s := newServer(t, func(c *Config) { c.StatePath = path; c.DeviceKey = nil })
	req := pairRequest(t, s.DevicePublicKey())
	resp, _ := s.handle(&connState{}, req)
	require.Empty(t, resp.Error)
	assert.Equal(t, s.EscrowBag(), resp.EscrowBag)

	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	s2 := newServer(t, func(c *Config) { c.StatePath = path; c.DeviceKey = testKeys(t)[1] })
	assert.Equal(t, s.DevicePublicKey(), s2.DevicePublicKey(), "device key comes from the state, not Config")
	assert.Equal(t, s.EscrowBag(), s2.EscrowBag())
	assert.Equal(t, []string{req.PairRecord.HostID}, s2.PairedHosts())
}

func TestPairChecks(t *testing.T) {
	s := newServer(t, nil)
	resp, _ := s.handle(&connState{}, &lockdown.Request{Request: "Pair"})
	assert.Equal(t, "MissingPairRecord", resp.Error)
	assert.Empty(t, resp.Result, "errors carry no Result (libimobiledevice §2.2)")

	foreign := pairRequest(t, lockdown.EncodeDevicePublicKey(&testKeys(t)[1].PublicKey))
	resp, _ = s.handle(&connState{}, foreign)
	assert.Equal(t, "InvalidPairRecord", resp.Error, "DeviceCertificate for another key [I]")

	lenient := newServer(t, func(c *Config) { c.AcceptForeignDeviceCert = true })
	resp, _ = lenient.handle(&connState{}, foreign)
	assert.Empty(t, resp.Error)

	// Re-pairing a known host shows no dialog, even if the user would deny.
	own := pairRequest(t, s.DevicePublicKey())
	resp, _ = s.handle(&connState{}, own)
	require.Empty(t, resp.Error)
	s.SetTrust(TrustPolicy{Mode: TrustDeny})
	resp, _ = s.handle(&connState{}, own)
	assert.Empty(t, resp.Error)
	resp, _ = s.handle(&connState{}, pairRequest(t, s.DevicePublicKey()))
	assert.Equal(t, "UserDeniedPairing", resp.Error)
}

func TestTrustDelayUsesClock(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newServer(t, func(c *Config) {
		c.Trust = TrustPolicy{Delay: 3 * time.Second}
		c.Now = func() time.Time { return now }
	})
	req := pairRequest(t, s.DevicePublicKey())
	for range 3 {
		resp, _ := s.handle(&connState{}, req)
		assert.Equal(t, "PairingDialogResponsePending", resp.Error)
		now = now.Add(time.Second)
	}
	resp, _ := s.handle(&connState{}, req)
	assert.Empty(t, resp.Error)
}

func TestUnpairEcho(t *testing.T) {
	for _, echo := range []bool{false, true} {
		var events []string
		s := newServer(t, func(c *Config) {
			c.UnpairEchoesValidatePair = echo
			c.OnPaired = func(h string) { events = append(events, "paired") }
			c.OnUnpaired = func(h string) { events = append(events, "unpaired") }
		})
		req := pairRequest(t, s.DevicePublicKey())
		resp, _ := s.handle(&connState{}, req)
		require.Empty(t, resp.Error)
		resp, _ = s.handle(&connState{}, &lockdown.Request{Request: "ValidatePair", PairRecord: req.PairRecord})
		assert.Empty(t, resp.Error)
		resp, _ = s.handle(&connState{}, &lockdown.Request{Request: "Unpair", PairRecord: req.PairRecord})
		assert.Empty(t, resp.Error)
		want := "Unpair"
		if echo {
			want = "ValidatePair" // pitfall 24
		}
		assert.Equal(t, want, resp.Request)
		resp, _ = s.handle(&connState{}, &lockdown.Request{Request: "Unpair", PairRecord: req.PairRecord})
		assert.Equal(t, "InvalidHostID", resp.Error)
		assert.Equal(t, []string{"paired", "unpaired"}, events)
	}
}

func TestNoSessionAnswers(t *testing.T) {
	s := newServer(t, func(c *Config) {
		c.Services = []Service{{Name: insecureNP}, {Name: "com.apple.afc"}}
	})
	cs := &connState{}
	for _, tc := range []struct {
		req  lockdown.Request
		want string
	}{
		{lockdown.Request{Request: "StopSession", SessionID: "x"}, "SessionInactive"},
		{lockdown.Request{Request: "StartService", Service: "com.apple.afc"}, "InvalidHostID"},
		{lockdown.Request{Request: "StartService", Service: insecureNP}, "ServiceProhibited"}, // allowed, but no Listener
		{lockdown.Request{Request: "StartSession"}, "MissingHostID"},
		{lockdown.Request{Request: "StartSession", HostID: "NOPE"}, "InvalidHostID"},
		{lockdown.Request{Request: "SetValue", Key: "DeviceName", Value: "x"}, "SetProhibited"},
		{lockdown.Request{Request: "SetValue", Key: "UntrustedHostBUID", Value: "B"}, ""},
		{lockdown.Request{Request: "GetValue", Domain: "com.apple.mobile.backup"}, "GetProhibited"},
		{lockdown.Request{Request: "Frobnicate"}, "InvalidRequest"},
		{lockdown.Request{Request: "QueryType"}, ""},
	} {
		resp, _ := s.handle(cs, &tc.req)
		assert.Equal(t, tc.want, resp.Error, tc.req.Request)
		assert.Equal(t, tc.req.Request, resp.Request)
	}
	resp, _ := s.handle(cs, pairRequest(t, s.DevicePublicKey()))
	require.Empty(t, resp.Error)
	resp, _ = s.handle(cs, &lockdown.Request{Request: "StartService", Service: "com.apple.afc"})
	assert.Equal(t, "SessionInactive", resp.Error, "trusted host, no session [U]")
}

// TestServeConnWire checks replies on the wire as libimobiledevice reads
// them: XML, Request echoed, Goodbye closes.
func TestServeConnWire(t *testing.T) {
	s := newServer(t, nil)
	a, b := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(context.Background(), b) }()
	pc := plistconn.New(a, plistconn.XML)
	require.NoError(t, pc.WriteMessage(map[string]any{"Label": "ideviceinfo", "Request": "QueryType"}))
	raw, err := pc.ReadRaw()
	require.NoError(t, err)
	assert.Contains(t, string(raw[:6]), "<?xml", "libimobiledevice needs XML starting with <?xml")
	var m map[string]any
	require.NoError(t, plistconn.Unmarshal(raw, &m))
	assert.Equal(t, map[string]any{"Request": "QueryType", "Type": "com.apple.mobile.lockdown"}, m)

	require.NoError(t, pc.WriteMessage(map[string]any{"Request": "GetValue", "Key": "DevicePublicKey"}))
	var r lockdown.Response
	require.NoError(t, pc.ReadMessage(&r))
	_, err = lockdown.ParseDevicePublicKey(r.Value.([]byte))
	assert.NoError(t, err, "DevicePublicKey is data holding PEM PKCS#1")

	require.NoError(t, pc.WriteMessage(map[string]any{"Request": "Goodbye"}))
	require.NoError(t, pc.ReadMessage(&r))
	assert.Equal(t, "Goodbye", r.Request)
	assert.NoError(t, <-done)
	a.Close()
}

func TestServeConnMalformed(t *testing.T) {
	s := newServer(t, nil)
	a, b := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(context.Background(), b) }()
	require.NoError(t, plistconn.New(a, plistconn.XML).WriteRaw([]byte("<?xml garbage")))
	assert.Error(t, <-done)
	a.Close()
}

func FuzzHandle(f *testing.F) {
	f.Add([]byte(`<?xml version="1.0"?><plist version="1.0"><dict><key>Request</key><string>GetValue</string><key>Domain</key><string>com.apple.mobile.iTunes</string></dict></plist>`))
	f.Add([]byte(`<?xml version="1.0"?><plist version="1.0"><dict><key>Request</key><string>Pair</string><key>PairRecord</key><dict><key>HostID</key><string>H</string><key>DeviceCertificate</key><data>AAAA</data></dict></dict></plist>`))
	f.Add([]byte(`<?xml version="1.0"?><plist version="1.0"><dict><key>Request</key><string>StartSession</string><key>HostID</key><string>H</string></dict></plist>`))
	keys := testKeysF()
	s, err := New(Config{Values: ExampleValues(udid), Domains: ExampleDomains(), DeviceKey: keys})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := lockdown.DecodeRequest(b)
		if err != nil {
			return
		}
		resp, _ := s.handle(&connState{}, req)
		if _, err := plistconn.Marshal(resp, plistconn.XML); err != nil {
			t.Fatalf("reply does not encode: %v", err)
		}
	})
}

func testKeysF() *rsa.PrivateKey {
	keyOnce.Do(func() {
		for i := range keys {
			k, err := lockdown.GenerateKey()
			if err != nil {
				return
			}
			keys[i] = k
		}
	})
	return keys[0]
}
