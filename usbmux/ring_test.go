package usbmux

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRing(t *testing.T) {
	var r ring
	assert.Equal(t, 0, r.Read(make([]byte, 4)))
	r.Write(nil)
	var want []byte
	src := fill(100000)
	got := make([]byte, 0, len(src))
	buf := make([]byte, 7000)
	// Interleave writes and reads of odd sizes so head wraps around and the buffer grows.
	for i, off := 0, 0; off < len(src) || r.Len() > 0; i++ {
		if off < len(src) {
			n := min(len(src)-off, 3000+i*37%5000)
			r.Write(src[off : off+n])
			want = append(want, src[off:off+n]...)
			off += n
		}
		n := r.Read(buf[:1000+i*53%6000])
		got = append(got, buf[:n]...)
	}
	assert.True(t, bytes.Equal(want, got))
	assert.Equal(t, 0, r.Len())
	r.Reset()
	assert.Equal(t, 0, r.Len())
}

func fill(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7 / 3)
	}
	return b
}
