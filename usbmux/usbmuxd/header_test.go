package usbmuxd

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeCounter records each Write separately.
type writeCounter struct{ writes [][]byte }

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, append([]byte(nil), p...))
	return len(p), nil
}

func TestFramerRoundTripOneWrite(t *testing.T) {
	var w writeCounter
	f := NewFramer(&w, nil)
	require.NoError(t, f.WriteFrame(&Frame{Version: ProtoPlist, Type: TypePlist, Tag: 7, Payload: []byte("hello")}))
	require.Len(t, w.writes, 1, "header and payload must go out in one write (M-b2)")
	assert.Equal(t, "15000000"+"01000000"+"08000000"+"07000000"+hex.EncodeToString([]byte("hello")), hex.EncodeToString(w.writes[0]))

	r := NewFramer(nil, bytes.NewReader(w.writes[0]))
	fr, err := r.ReadFrame()
	require.NoError(t, err)
	assert.Equal(t, &Frame{Version: ProtoPlist, Type: TypePlist, Tag: 7, Payload: []byte("hello")}, fr)
	_, err = r.ReadFrame()
	assert.ErrorIs(t, err, io.EOF)
}

func TestFramerDoesNotReadAhead(t *testing.T) {
	msg, err := AppendFrame(nil, &Frame{Type: TypeResult, Tag: 1, Payload: AppendResult(nil, ResultOK)})
	require.NoError(t, err)
	src := bytes.NewReader(append(msg, "raw device bytes"...))
	fr, err := NewFramer(nil, src).ReadFrame()
	require.NoError(t, err)
	assert.Equal(t, TypeResult, fr.Type)
	rest, _ := io.ReadAll(src)
	assert.Equal(t, "raw device bytes", string(rest))
}

func TestFramerRejectsBadLengths(t *testing.T) {
	for name, hdr := range map[string]string{
		"shorter than header": "0f000000 00000000 03000000 01000000",
		"zero":                "00000000 00000000 03000000 01000000",
		"above limit":         "01000100 01000000 08000000 01000000", // 65537
		"huge":                "ffffffff 01000000 08000000 01000000",
	} {
		t.Run(name, func(t *testing.T) {
			b, err := hex.DecodeString(strings.ReplaceAll(hdr, " ", ""))
			require.NoError(t, err)
			_, err = NewFramer(nil, bytes.NewReader(b)).ReadFrame()
			assert.ErrorIs(t, err, ErrFrameSize)
		})
	}
}

func TestFramerTruncated(t *testing.T) {
	_, err := NewFramer(nil, bytes.NewReader([]byte{1, 2, 3})).ReadFrame()
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	b, _ := AppendFrame(nil, &Frame{Type: TypePlist, Payload: make([]byte, 100)})
	_, err = NewFramer(nil, bytes.NewReader(b[:50])).ReadFrame()
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

func TestEnumStrings(t *testing.T) {
	assert.Equal(t, "PLIST", TypePlist.String())
	assert.Equal(t, "MessageType(99)", MessageType(99).String())
	assert.Equal(t, "plist", ProtoPlist.String())
	assert.Equal(t, "ProtoVersion(7)", ProtoVersion(7).String())
	assert.Equal(t, "CONNREFUSED", ResultConnRefused.String())
	assert.Equal(t, "Result(22)", ResultEINVAL.String())
	assert.Equal(t, "Paired", Paired.String())
}

// FuzzReadFrame checks that any byte stream either fails cleanly or yields
// frames that re-encode to the same bytes.
func FuzzReadFrame(f *testing.F) {
	seed, _ := AppendFrame(nil, &Frame{Version: ProtoPlist, Type: TypePlist, Tag: 1, Payload: []byte("<plist/>")})
	f.Add(seed)
	f.Add([]byte{16, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewFramer(nil, bytes.NewReader(data))
		var consumed int
		for {
			fr, err := r.ReadFrame()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrFrameSize) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			b, err := AppendFrame(nil, fr)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, data[consumed:consumed+len(b)]) {
				t.Fatalf("re-encoding differs")
			}
			consumed += len(b)
		}
	})
}
