package keybag

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var testKey = bytes.Repeat([]byte{0x42}, 32)

func TestEncryptDecrypt(t *testing.T) {
	for _, n := range []int{0, 1, 9, 15, 16, 17, 32, 100000} {
		plain := bytes.Repeat([]byte("abcdefghijklm"), n)[:n]
		ct, err := Encrypt(testKey, plain)
		require.NoError(t, err)
		assert.Equal(t, (n/16+1)*16, len(ct), "PKCS#7 always pads")
		got, err := Decrypt(testKey, ct)
		require.NoError(t, err)
		assert.Equal(t, plain, got)

		// streaming forms agree with the whole-buffer forms
		var buf bytes.Buffer
		w, err := NewEncryptWriter(&buf, testKey)
		require.NoError(t, err)
		for i := 0; i < n; i += 7 {
			_, err := w.Write(plain[i:min(i+7, n)])
			require.NoError(t, err)
		}
		require.NoError(t, w.Close())
		assert.Equal(t, ct, buf.Bytes())
		for _, r := range []io.Reader{bytes.NewReader(ct), iotest.OneByteReader(bytes.NewReader(ct)), iotest.HalfReader(bytes.NewReader(ct))} {
			dr, err := NewDecryptReader(r, testKey)
			require.NoError(t, err)
			got, err := io.ReadAll(dr)
			require.NoError(t, err)
			assert.Equal(t, plain, got)
		}
	}
}

func TestDecryptPaddingVector(t *testing.T) {
	// pyiosbackup's vector shape (format §6.4): one block "Test data" + seven 0x07.
	ct, err := Encrypt(testKey, []byte("Test data"))
	require.NoError(t, err)
	require.Len(t, ct, 16)
	mode, err := newCBC(testKey, true)
	require.NoError(t, err)
	raw := make([]byte, 16)
	mode.CryptBlocks(raw, ct)
	assert.Equal(t, append([]byte("Test data"), 7, 7, 7, 7, 7, 7, 7), raw)
}

func TestDecryptErrors(t *testing.T) {
	ct, err := Encrypt(testKey, []byte("hello world, this is longer than a block"))
	require.NoError(t, err)
	_, err = Decrypt(testKey, ct[:len(ct)-1])
	assert.ErrorIs(t, err, ErrBadLength)
	wrong := bytes.Repeat([]byte{1}, 32)
	_, err = Decrypt(wrong, ct)
	assert.ErrorIs(t, err, ErrBadPadding)
	_, err = Decrypt(testKey[:16], ct)
	assert.Error(t, err)
	got, err := Decrypt(testKey, nil)
	require.NoError(t, err)
	assert.Empty(t, got, "zero-byte stored file is an empty file")

	dr, err := NewDecryptReader(bytes.NewReader(ct[:len(ct)-5]), testKey)
	require.NoError(t, err)
	_, err = io.ReadAll(dr)
	assert.ErrorIs(t, err, ErrBadLength)
	dr, err = NewDecryptReader(bytes.NewReader(ct), wrong)
	require.NoError(t, err)
	_, err = io.ReadAll(dr)
	assert.ErrorIs(t, err, ErrBadPadding)
}

func FuzzDecryptReader(f *testing.F) {
	ct, _ := Encrypt(testKey, []byte("seed data that spans blocks......"))
	f.Add(ct)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, ct []byte) {
		whole, werr := Decrypt(testKey, ct)
		dr, err := NewDecryptReader(iotest.HalfReader(bytes.NewReader(ct)), testKey)
		require.NoError(t, err)
		stream, serr := io.ReadAll(dr)
		assert.Equal(t, werr == nil, serr == nil)
		if werr == nil {
			assert.Equal(t, whole, stream)
		}
	})
}
