package keybag

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tailOf returns the last min(32, len(ct)) bytes, what PlaintextSize takes.
func tailOf(ct []byte) []byte { return ct[len(ct)-min(len(ct), 32):] }

func TestPlaintextSize(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, 1000} {
		plain := bytes.Repeat([]byte{0xa5}, n)
		ct, err := Encrypt(testKey, plain)
		require.NoError(t, err)
		got, err := PlaintextSize(testKey, tailOf(ct), int64(len(ct)))
		require.NoError(t, err, "n=%d", n)
		assert.EqualValues(t, n, got, "n=%d", n)
	}
	got, err := PlaintextSize(testKey, nil, 0)
	require.NoError(t, err)
	assert.Zero(t, got, "a zero-byte stored file is an empty file")
}

func TestPlaintextSizeErrors(t *testing.T) {
	ct, err := Encrypt(testKey, bytes.Repeat([]byte("x"), 50))
	require.NoError(t, err)
	_, err = PlaintextSize(testKey, tailOf(ct[:len(ct)-3]), int64(len(ct)-3))
	assert.ErrorIs(t, err, ErrBadLength)
	_, err = PlaintextSize(bytes.Repeat([]byte{1}, 32), tailOf(ct), int64(len(ct)))
	assert.ErrorIs(t, err, ErrBadPadding)
	_, err = PlaintextSize(testKey, ct[len(ct)-16:], int64(len(ct)))
	assert.Error(t, err, "tail must hold the IV block too")
	_, err = PlaintextSize(testKey[:16], tailOf(ct), int64(len(ct)))
	assert.Error(t, err)
}

// FuzzPlaintextSize checks the last-block shortcut against a full decrypt.
func FuzzPlaintextSize(f *testing.F) {
	ct, _ := Encrypt(testKey, []byte("seed data that spans blocks......"))
	f.Add(ct)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, ct []byte) {
		whole, werr := Decrypt(testKey, ct)
		n, err := PlaintextSize(testKey, tailOf(ct), int64(len(ct)))
		assert.Equal(t, werr == nil, err == nil)
		if werr == nil {
			assert.EqualValues(t, len(whole), n)
		}
	})
}

func TestDecryptReaderBufferAndWriteTo(t *testing.T) {
	plain := make([]byte, 300<<10+7)
	for i := range plain {
		plain[i] = byte(i * 7)
	}
	ct, err := Encrypt(testKey, plain)
	require.NoError(t, err)
	buf := make([]byte, 4096)
	for name, r := range map[string]func() io.Reader{
		"whole": func() io.Reader { return bytes.NewReader(ct) },
		"one":   func() io.Reader { return iotest.OneByteReader(bytes.NewReader(ct)) },
		"eof":   func() io.Reader { return iotest.DataErrReader(bytes.NewReader(ct)) },
	} {
		dr, err := NewDecryptReaderBuffer(r(), testKey, buf)
		require.NoError(t, err)
		var out bytes.Buffer
		n, err := io.Copy(&out, dr) // uses WriteTo
		require.NoError(t, err, name)
		assert.EqualValues(t, len(plain), n, name)
		assert.True(t, bytes.Equal(plain, out.Bytes()), name)

		dr, err = NewDecryptReaderBuffer(r(), testKey, buf[:64])
		require.NoError(t, err)
		got, err := io.ReadAll(dr)
		require.NoError(t, err, name)
		assert.True(t, bytes.Equal(plain, got), name)
	}
	dr, err := NewDecryptReaderBuffer(bytes.NewReader(ct), testKey, buf)
	require.NoError(t, err)
	require.NoError(t, iotest.TestReader(dr, plain))

	_, err = NewDecryptReaderBuffer(bytes.NewReader(ct), testKey, buf[:63])
	assert.Error(t, err)
}

func TestDecryptReaderWriteToErrors(t *testing.T) {
	ct, err := Encrypt(testKey, bytes.Repeat([]byte("y"), 5000))
	require.NoError(t, err)
	dr, err := NewDecryptReader(bytes.NewReader(ct[:len(ct)-1]), testKey)
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, dr)
	assert.ErrorIs(t, err, ErrBadLength)
	dr, err = NewDecryptReader(bytes.NewReader(ct), bytes.Repeat([]byte{1}, 32))
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, dr)
	assert.ErrorIs(t, err, ErrBadPadding)
	dr, err = NewDecryptReader(iotest.TimeoutReader(bytes.NewReader(ct)), testKey)
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, dr)
	assert.ErrorIs(t, err, iotest.ErrTimeout)
}
