//go:build amd64 && !purego

package keybag

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stdCBCDecrypt is the reference: crypto/cipher's CBC decrypter.
func stdCBCDecrypt(t testing.TB, key, iv, ct []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(key)
	require.NoError(t, err)
	out := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, ct)
	return out
}

func TestSubWordIsSBox(t *testing.T) {
	if !haveAESNI {
		t.Skip("no AES-NI")
	}
	// FIPS-197 S-box: S(00)=63, S(01)=7c, S(53)=ed, S(ff)=16.
	assert.Equal(t, uint32(0x16ed7c63), subWord(0xff530100))
}

// TestExpandDecKeyFIPS197 checks the key schedule with the AES-256 example
// of FIPS-197 Appendix A.3 (last round key w[56..59]).
func TestExpandDecKeyFIPS197(t *testing.T) {
	if !haveAESNI {
		t.Skip("no AES-NI")
	}
	key := []byte{
		0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae, 0xf0, 0x85, 0x7d, 0x77, 0x81,
		0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61, 0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4}
	var dk [240]byte
	expandDecKey(key, &dk)
	last := []byte{0xfe, 0x48, 0x90, 0xd1, 0xe6, 0x18, 0x8d, 0x0b, 0x04, 0x6d, 0xf3, 0x44, 0x70, 0x6c, 0x63, 0x1e}
	assert.Equal(t, last, dk[:16], "first decryption round key is the last encryption round key")
	assert.Equal(t, key[:16], dk[224:], "last decryption round key is the first key half")
}

// TestFastCBCMatchesStdlib compares the AES-NI decrypter with crypto/cipher
// over lengths around the 8-block stride, in place and not, across calls.
func TestFastCBCMatchesStdlib(t *testing.T) {
	if !haveAESNI {
		t.Skip("no AES-NI")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, blocks := range []int{1, 2, 7, 8, 9, 15, 16, 17, 64, 1000} {
		key := make([]byte, 32)
		iv := make([]byte, 16)
		ct := make([]byte, blocks*16)
		for _, b := range [][]byte{key, iv, ct} {
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
		}
		want := stdCBCDecrypt(t, key, iv, ct)

		fast := newFastCBCDecrypter(key, iv)
		require.NotNil(t, fast)
		got := make([]byte, len(ct))
		fast.CryptBlocks(got, ct)
		assert.Equal(t, want, got, "blocks=%d", blocks)

		// in place, split over two calls at an odd block boundary
		fast = newFastCBCDecrypter(key, iv)
		inplace := bytes.Clone(ct)
		cut := blocks / 3 * 16
		fast.CryptBlocks(inplace[:cut], inplace[:cut])
		fast.CryptBlocks(inplace[cut:], inplace[cut:])
		assert.Equal(t, want, inplace, "blocks=%d in place", blocks)
	}
}

// FuzzFastCBC differentially fuzzes the AES-NI decrypter.
func FuzzFastCBC(f *testing.F) {
	if !haveAESNI {
		f.Skip("no AES-NI")
	}
	f.Add(bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 16*9))
	f.Fuzz(func(t *testing.T, key, ct []byte) {
		if len(key) < 32 {
			return
		}
		key, ct = key[:32], ct[:len(ct)/16*16]
		if len(ct) == 0 {
			return
		}
		want := stdCBCDecrypt(t, key, zeroIV[:], ct)
		got := bytes.Clone(ct)
		newFastCBCDecrypter(key, zeroIV[:]).CryptBlocks(got, got)
		assert.Equal(t, want, got)
	})
}

func BenchmarkFastCBC(b *testing.B) {
	buf := make([]byte, 256<<10)
	d := newFastCBCDecrypter(testKey, zeroIV[:])
	if d == nil {
		b.Skip("no AES-NI")
	}
	b.SetBytes(int64(len(buf)))
	for i := 0; i < b.N; i++ {
		d.CryptBlocks(buf, buf)
	}
}
