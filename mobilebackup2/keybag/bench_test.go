package keybag

import (
	"bytes"
	"io"
	"testing"
)

func BenchmarkDecryptReader(b *testing.B) {
	plain := make([]byte, 8<<20)
	ct, _ := Encrypt(testKey, plain)
	buf := make([]byte, 256<<10)
	b.SetBytes(int64(len(plain)))
	for i := 0; i < b.N; i++ {
		dr, _ := NewDecryptReader(bytes.NewReader(ct), testKey)
		io.CopyBuffer(io.Discard, dr, buf)
	}
}
