package devicelink

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// rw joins a reader and a writer.
type rw struct {
	io.Reader
	io.Writer
}

func TestVersionExchange(t *testing.T) {
	for _, major := range []int64{300, 400, 500} {
		h, d := net.Pipe()
		host, dev := NewConn(h, plistconn.Binary), NewConn(d, plistconn.Binary)
		done := make(chan error, 1)
		go func() { done <- dev.AcceptVersionExchange(major, 0) }()
		got, minor, err := host.VersionExchange()
		require.NoError(t, err)
		assert.Equal(t, major, got, "host echoes the device's major (§1.3)")
		assert.Equal(t, int64(0), minor)
		require.NoError(t, <-done)
		h.Close()
		d.Close()
	}
}

func TestVersionExchangeRejectsOld(t *testing.T) {
	h, d := net.Pipe()
	defer h.Close()
	defer d.Close()
	go func() { _ = NewConn(d, plistconn.Binary).Write(MsgVersionExchange, int64(200), int64(0)) }()
	_, _, err := NewConn(h, plistconn.Binary).VersionExchange()
	assert.ErrorIs(t, err, ErrProtocol)
}

func TestStatusCodes(t *testing.T) {
	// Go host: 8-byte signed; libplist ≥2.3 16-byte; pymobiledevice3 XML
	// unsigned (corrections.md B1/B2). All read as −13.
	var buf bytes.Buffer
	c := NewConn(&rw{&buf, &buf}, plistconn.Binary)
	require.NoError(t, c.WriteStatus(-13, "Multi status", map[string]any{"a": map[string]any{"DLFileErrorCode": int64(-6)}}))
	m, err := c.Read()
	require.NoError(t, err)
	st, err := ParseStatus(m)
	require.NoError(t, err)
	assert.Equal(t, int32(-13), st.Code)
	assert.Equal(t, "Multi status", st.Description)

	xml := `<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><array><string>DLMessageStatusResponse</string><integer>18446744073709551603</integer><string>___EmptyParameterString___</string><dict/></array></plist>`
	m, err = Decode([]byte(xml))
	require.NoError(t, err)
	st, err = ParseStatus(m)
	require.NoError(t, err)
	assert.Equal(t, int32(-13), st.Code)
	assert.Empty(t, st.Description)

	// 16-byte binary integer (marker 0x14) holding 2^64−13.
	bin16 := bplistArrayWith16ByteInt(t)
	m, err = Decode(bin16)
	require.NoError(t, err)
	st, err = ParseStatus(m)
	require.NoError(t, err)
	assert.Equal(t, int32(-13), st.Code)
}

// bplistArrayWith16ByteInt builds ["DLMessageStatusResponse", <16-byte int>]
// by hand, as libplist ≥ 2.3 writes it.
func bplistArrayWith16ByteInt(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("bplist00")
	offs := []int{}
	offs = append(offs, b.Len()) // 0: array of 2 refs
	b.Write([]byte{0xA2, 1, 2})
	offs = append(offs, b.Len()) // 1: string
	name := "DLMessageStatusResponse"
	b.Write([]byte{0x5F, 0x10, byte(len(name))})
	b.WriteString(name)
	offs = append(offs, b.Len()) // 2: 16-byte int
	b.Write([]byte{0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xF3})
	table := b.Len()
	for _, o := range offs {
		b.WriteByte(byte(o))
	}
	trailer := make([]byte, 32)
	trailer[6], trailer[7] = 1, 1 // offset int size, object ref size
	trailer[15] = byte(len(offs))
	trailer[31] = byte(table)
	b.Write(trailer)
	return b.Bytes()
}

func TestDecodeRejects(t *testing.T) {
	for name, v := range map[string]any{
		"empty array": []any{},
		"short name":  []any{"DLMsg"},
		"not DL":      []any{"XXMessageProcessMessage"},
		"not string":  []any{int64(1)},
		"dict":        map[string]any{"a": "b"},
	} {
		b, err := plistconn.Marshal(v, plistconn.Binary)
		require.NoError(t, err)
		_, err = Decode(b)
		assert.ErrorIs(t, err, ErrProtocol, name)
	}
}

func TestSendReceiveFile(t *testing.T) {
	for _, n := range []int{0, 1, FramePayload - 1, FramePayload, FramePayload + 1, 3*FramePayload + 7} {
		data := bytes.Repeat([]byte{0xAB}, n)
		var wire bytes.Buffer
		sent, err := SendFile(&wire, bytes.NewReader(data))
		require.NoError(t, err)
		assert.Equal(t, int64(n), sent)
		frames := 0
		// Every DATA frame carries at most 32 KiB (§3.2).
		for rest := wire.Bytes(); len(rest) > 0; frames++ {
			l := int(rest[0])<<24 | int(rest[1])<<16 | int(rest[2])<<8 | int(rest[3])
			assert.LessOrEqual(t, l-1, FramePayload)
			rest = rest[4+l:]
		}
		assert.Equal(t, (n+FramePayload-1)/FramePayload+1, frames)
		var got bytes.Buffer
		res, err := ReceiveFile(&wire, &got)
		require.NoError(t, err)
		assert.Equal(t, CodeSuccess, res.Code)
		assert.Equal(t, int64(n), res.Bytes)
		assert.True(t, bytes.Equal(data, got.Bytes()))
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestReceiveFileDrainsAfterWriteError(t *testing.T) {
	var wire bytes.Buffer
	_, err := SendFile(&wire, bytes.NewReader(make([]byte, 100000)))
	require.NoError(t, err)
	require.NoError(t, WriteName(&wire, "next"))
	res, err := ReceiveFile(&wire, &failWriter{n: 40000})
	require.NoError(t, err)
	assert.EqualError(t, res.WriteErr, "disk full")
	name, end, err := ReadName(&wire)
	require.NoError(t, err)
	assert.False(t, end)
	assert.Equal(t, "next", name, "stream stays in sync")
}

func TestReceiveFileErrors(t *testing.T) {
	var wire bytes.Buffer
	require.NoError(t, WriteFrame(&wire, CodeFileData, []byte("abc")))
	require.NoError(t, WriteFrame(&wire, CodeErrorRemote, []byte("Input/output error (5)")))
	res, err := ReceiveFile(&wire, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, CodeErrorRemote, res.Code)
	assert.Equal(t, "Input/output error (5)", res.Message)

	_, err = ReceiveFile(bytes.NewReader([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0x0C}), io.Discard)
	assert.ErrorIs(t, err, ErrProtocol)
	_, err = ReceiveFile(bytes.NewReader([]byte{0, 0, 0, 1, 0x42}), io.Discard)
	assert.ErrorIs(t, err, ErrProtocol)
	_, _, err = ReadName(bytes.NewReader([]byte{0, 0, 0x10, 0x01}))
	assert.ErrorIs(t, err, ErrNameTooLong)
	assert.Equal(t, "CODE_FILE_DATA", CodeFileData.String())
	assert.True(t, strings.HasPrefix(Code(0x42).String(), "Code("))
}

func FuzzDecode(f *testing.F) {
	for _, v := range [][]any{
		{MsgProcessMessage, map[string]any{"MessageName": "Response", "ErrorCode": int64(0)}},
		{MsgStatusResponse, int64(-13), "Multi status", map[string]any{}},
		{MsgDownloadFiles, []any{"a/Status.plist"}, map[string]any{}, 1.5, uint64(0)},
	} {
		b, _ := plistconn.Marshal(v, plistconn.Binary)
		f.Add(b)
		b, _ = plistconn.Marshal(v, plistconn.XML)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		// Round trip: re-encoding and decoding gives the same name and arity.
		var buf bytes.Buffer
		c := NewConn(&rw{&buf, &buf}, plistconn.Binary)
		if err := c.Write(m.Name, m.Args...); err != nil {
			return
		}
		m2, err := c.Read()
		require.NoError(t, err)
		assert.Equal(t, m.Name, m2.Name)
		assert.Len(t, m2.Args, len(m.Args))
		_, _ = ParseStatus(m)
	})
}

func FuzzReceiveFile(f *testing.F) {
	var wire bytes.Buffer
	_, _ = SendFile(&wire, bytes.NewReader([]byte("hello world")))
	f.Add(wire.Bytes())
	f.Add([]byte{0, 0, 0, 5, 0x0B, 'o', 'o', 'p', 's'})
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var got bytes.Buffer
		res, err := ReceiveFile(bytes.NewReader(b), &got)
		assert.Equal(t, int64(got.Len()), res.Bytes)
		if err == nil {
			assert.Contains(t, []Code{CodeSuccess, CodeErrorLocal, CodeErrorRemote}, res.Code)
		}
		_, _, _ = ReadName(bytes.NewReader(b))
	})
}
