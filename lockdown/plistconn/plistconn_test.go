package plistconn

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type request struct {
	Label   string `plist:"Label"`
	Request string `plist:"Request"`
	Key     string `plist:"Key,omitempty"`
}

func TestRoundTripBothFormats(t *testing.T) {
	for _, f := range []Format{XML, Binary} {
		t.Run(f.String(), func(t *testing.T) {
			var buf bytes.Buffer
			c := New(&buf, f)
			require.NoError(t, c.WriteMessage(request{Label: "ibackup", Request: "QueryType"}))
			require.NoError(t, c.WriteMessage(map[string]any{"Request": "GetValue", "Key": "ProductVersion"}))
			var got request
			require.NoError(t, c.ReadMessage(&got))
			assert.Equal(t, request{Label: "ibackup", Request: "QueryType"}, got)
			var m map[string]any
			require.NoError(t, c.ReadMessage(&m))
			assert.Equal(t, "ProductVersion", m["Key"])
			_, err := c.ReadRaw()
			assert.ErrorIs(t, err, io.EOF)
		})
	}
}

func TestXMLIsAppleStyle(t *testing.T) {
	b, err := Marshal(request{Label: "x", Request: "QueryType"}, XML)
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(b, []byte(`<?xml version="1.0" encoding="UTF-8"?>`)))
	assert.Contains(t, string(b), "<!DOCTYPE plist")
	assert.Contains(t, string(b), "\t<key>Label</key>")
}

func TestControlCharactersTolerated(t *testing.T) {
	in := []byte("<?xml version=\"1.0\"?><plist version=\"1.0\"><dict><key>DeviceName</key><string>a\x01b</string></dict></plist>")
	var m map[string]string
	require.NoError(t, Unmarshal(in, &m))
	assert.Equal(t, "a b", m["DeviceName"])
}

func TestLengthBounded(t *testing.T) {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], 1<<31)
	c := New(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(hdr[:]), io.Discard}, XML)
	_, err := c.ReadRaw()
	assert.ErrorIs(t, err, ErrTooLarge)

	c = New(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(append(binary.BigEndian.AppendUint32(nil, 100), "short"...)), io.Discard}, XML)
	_, err = c.ReadRaw()
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

func TestNoReadAhead(t *testing.T) {
	var buf bytes.Buffer
	c := New(&buf, Binary)
	require.NoError(t, c.WriteMessage([]any{"DLMessageDeviceReady"}))
	buf.WriteString("RAW")
	var v []any
	require.NoError(t, c.ReadMessage(&v))
	assert.Equal(t, "RAW", buf.String())
}

func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{
		`<?xml version="1.0"?><plist version="1.0"><dict><key>Request</key><string>QueryType</string></dict></plist>`,
		"bplist00\xd1\x01\x02QaQb\x08\x0b\x0d\x00\x00\x00\x00\x00\x00\x01\x01\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x0f",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var v any
		if Unmarshal(b, &v) != nil {
			return
		}
		// Whatever decodes must encode again.
		_, err := Marshal(v, Binary)
		_ = err
	})
}
