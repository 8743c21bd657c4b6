package devicelink

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writerOnly hides the io.ReaderFrom of its writer.
type writerOnly struct{ w io.Writer }

func (w writerOnly) Write(p []byte) (int, error) { return w.w.Write(p) }

// failReaderFrom accepts n bytes through ReadFrom, then fails.
type failReaderFrom struct {
	n   int
	got bytes.Buffer
}

func (f *failReaderFrom) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errors.New("disk full")
	}
	return f.got.Write(p)
}

func (f *failReaderFrom) ReadFrom(r io.Reader) (int64, error) {
	buf := make([]byte, 1000)
	var total int64
	for {
		k, err := r.Read(buf)
		total += int64(k)
		if _, werr := f.Write(buf[:k]); werr != nil {
			return total, werr
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func TestReceiveFileDestinations(t *testing.T) {
	data := make([]byte, 3*FramePayload+11)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for name, tc := range map[string]struct {
		dst     func(*bytes.Buffer) io.Writer
		wantErr string
	}{
		"reader from":         {dst: func(b *bytes.Buffer) io.Writer { return b }},
		"plain writer":        {dst: func(b *bytes.Buffer) io.Writer { return writerOnly{b} }},
		"reader from fails":   {dst: func(*bytes.Buffer) io.Writer { return &failReaderFrom{n: 40000} }, wantErr: "disk full"},
		"plain writer fails":  {dst: func(*bytes.Buffer) io.Writer { return writerOnly{&failReaderFrom{n: 40000}} }, wantErr: "disk full"},
		"reader from fails 0": {dst: func(*bytes.Buffer) io.Writer { return &failReaderFrom{} }, wantErr: "disk full"},
	} {
		t.Run(name, func(t *testing.T) {
			var wire bytes.Buffer
			_, err := SendFile(&wire, bytes.NewReader(data))
			require.NoError(t, err)
			require.NoError(t, WriteName(&wire, "next"))
			var got bytes.Buffer
			res, err := ReceiveFile(&wire, tc.dst(&got))
			require.NoError(t, err)
			assert.Equal(t, CodeSuccess, res.Code)
			assert.Equal(t, int64(len(data)), res.Bytes, "every byte is consumed")
			if tc.wantErr != "" {
				assert.EqualError(t, res.WriteErr, tc.wantErr)
			} else {
				require.NoError(t, res.WriteErr)
				assert.True(t, bytes.Equal(data, got.Bytes()))
			}
			next, end, err := ReadName(&wire)
			require.NoError(t, err)
			assert.False(t, end)
			assert.Equal(t, "next", next, "stream stays in sync")
		})
	}
}

func TestReceiveFileTruncated(t *testing.T) {
	var wire bytes.Buffer
	_, err := SendFile(&wire, bytes.NewReader(make([]byte, 2*FramePayload)))
	require.NoError(t, err)
	// Cut inside a header or a frame's data, or between frames.
	for _, cut := range []int{0, 3, 5, 100, FramePayload + 5, FramePayload + 6, FramePayload + 9, wire.Len() - 1} {
		for name, dst := range map[string]io.Writer{"reader from": &bytes.Buffer{}, "plain writer": writerOnly{io.Discard}} {
			_, err := ReceiveFile(bytes.NewReader(wire.Bytes()[:cut]), dst)
			require.Error(t, err, "%s cut at %d", name, cut)
			assert.True(t, errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF), "%s cut at %d: %v", name, cut, err)
			if cut == 100 {
				assert.ErrorContains(t, err, "read frame data")
			}
		}
	}
}

func BenchmarkReceiveFile(b *testing.B) {
	var wire bytes.Buffer
	_, err := SendFile(&wire, bytes.NewReader(make([]byte, 1<<20)))
	require.NoError(b, err)
	dst := &bytes.Buffer{}
	b.SetBytes(1 << 20)
	b.ReportAllocs()
	for b.Loop() {
		dst.Reset()
		if _, err := ReceiveFile(bytes.NewReader(wire.Bytes()), dst); err != nil {
			b.Fatal(err)
		}
	}
}
