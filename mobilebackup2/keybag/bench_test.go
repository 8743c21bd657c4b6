package keybag

import (
	"bytes"
	"io"
	"testing"
)

// BenchmarkDecryptReader measures streaming decryption through io.Copy
// (WriteTo) with a reused working buffer.
func BenchmarkDecryptReader(b *testing.B) {
	plain := make([]byte, 8<<20)
	ct, _ := Encrypt(testKey, plain)
	buf := make([]byte, DecryptBufferSize)
	b.SetBytes(int64(len(plain)))
	for i := 0; i < b.N; i++ {
		dr, _ := NewDecryptReaderBuffer(bytes.NewReader(ct), testKey, buf)
		io.Copy(io.Discard, dr)
	}
}
