package usbemu

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFrameRoundTrip(t *testing.T) {
	var b []byte
	var err error
	frames := []Frame{
		{Type: FrameHello, Payload: []byte(`{"x":1}`)},
		{Type: FrameOut, Payload: []byte{}},
		{Type: FrameIn, Payload: bytes.Repeat([]byte{7}, 16384)},
	}
	for _, f := range frames {
		b, err = AppendFrame(b, f)
		require.NoError(t, err)
	}
	r := bytes.NewReader(b)
	for _, want := range frames {
		got, err := ReadFrame(r)
		require.NoError(t, err)
		assert.Equal(t, want.Type, got.Type)
		assert.Equal(t, len(want.Payload), len(got.Payload))
		assert.True(t, bytes.Equal(want.Payload, got.Payload))
	}
	_, err = ReadFrame(r)
	assert.ErrorIs(t, err, io.EOF)
}

func TestFrameErrors(t *testing.T) {
	_, err := ReadFrame(bytes.NewReader([]byte{0, 0, 0, 0}))
	assert.ErrorIs(t, err, ErrFrameEmpty)
	_, err = ReadFrame(bytes.NewReader([]byte{0x00, 0x10, 0x00, 0x01}))
	assert.ErrorIs(t, err, ErrFrameTooLarge)
	_, err = ReadFrame(bytes.NewReader([]byte{0, 0, 0, 5, 2, 1}))
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	_, err = ReadFrame(bytes.NewReader([]byte{0, 0, 0, 5}))
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	_, err = AppendFrame(nil, Frame{Type: FrameIn, Payload: make([]byte, MaxFrame)})
	assert.ErrorIs(t, err, ErrFrameTooLarge)
	assert.Equal(t, "OUT", FrameOut.String())
	assert.Equal(t, "FrameType(9)", FrameType(9).String())
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 3})
	f.Add([]byte{0, 0, 0, 3, 2, 0xAA, 0xBB})
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ReadFrame(bytes.NewReader(b))
		if err != nil {
			return
		}
		enc, err := AppendFrame(nil, fr)
		require.NoError(t, err)
		n := binary.BigEndian.Uint32(b)
		assert.Equal(t, b[:4+n], enc)
	})
}

func TestHello(t *testing.T) {
	h, err := NewHello(Identity{UDID: "00008030-001A2B3C4D5E6F70"})
	require.NoError(t, err)
	assert.Equal(t, "00008030001A2B3C4D5E6F70", h.Strings["3"])
	assert.Equal(t, "03030300", h.Mode)
	assert.Equal(t, 1, h.InitialConfig)
	assert.Equal(t, MuxOut, h.MuxOut)
	assert.Equal(t, MuxIn, h.MuxIn)
	d, err := hex.DecodeString(h.Descriptors)
	require.NoError(t, err)
	assert.Equal(t, byte(NumConfigs), d[17])
	// The JSON field names are the ones usbbus.py reads.
	b, err := json.Marshal(h)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	for _, k := range []string{"descriptors", "strings", "mux_out", "mux_in", "max_packet", "initial_config", "mode"} {
		assert.Contains(t, m, k)
	}
	_, err = NewHello(Identity{UDID: "not-a-udid"})
	assert.ErrorIs(t, err, ErrIdentity)
}

func TestParseEvent(t *testing.T) {
	e, err := ParseEvent([]byte(`{"kind":"set_configuration","value":4}`))
	require.NoError(t, err)
	assert.Equal(t, Event{Kind: EventConfig, Value: 4}, e)
	_, err = ParseEvent([]byte(`{`))
	assert.Error(t, err)
}

func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(`{"kind":"set_configuration","value":4}`))
	f.Add([]byte(`{"kind":"reset"}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		e, err := ParseEvent(p)
		if err != nil {
			return
		}
		b, err := json.Marshal(e)
		require.NoError(t, err)
		again, err := ParseEvent(b)
		require.NoError(t, err)
		assert.Equal(t, e, again)
	})
}
