package keybag

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	require.NoError(t, err)
	return b
}

// TestKeyWrapRFC3394Vectors checks the six test vectors of RFC 3394 §4.
func TestKeyWrapRFC3394Vectors(t *testing.T) {
	const kek = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
	const data = "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F"
	vectors := []struct {
		kekBytes, dataBytes int
		out                 string
	}{
		{16, 16, "1FA68B0A8112B447 AEF34BD8FB5A7B82 9D3E862371D2CFE5"},
		{24, 16, "96778B25AE6CA435 F92B5B97C050AED2 468AB8A17AD84E5D"},
		{32, 16, "64E8C3F9CE0F5BA2 63E9777905818A2A 93C8191E7D6E8AE7"},
		{24, 24, "031D33264E15D332 68F24EC260743EDC E1C6C7DDEE725A93 6BA814915C6762D2"},
		{32, 24, "A8F9BC1612C68B3F F6E6F4FBE30E71E4 769C8B80A32CB895 8CD5D17D6B254DA1"},
		{32, 32, "28C9F404C4B810F4 CBCCB35CFB87F826 3F5786E2D80ED326 CBC7F0E71A99F43B FB988B9B7A02DD21"},
	}
	for _, v := range vectors {
		k := unhex(t, kek)[:v.kekBytes]
		d := unhex(t, data)[:v.dataBytes]
		want := unhex(t, v.out)
		got, err := Wrap(k, d)
		require.NoError(t, err)
		assert.Equal(t, want, got, "wrap %d/%d", v.kekBytes, v.dataBytes)
		plain, err := Unwrap(k, want)
		require.NoError(t, err)
		assert.Equal(t, d, plain)
		bad := append([]byte(nil), want...)
		bad[len(bad)-1] ^= 1
		_, err = Unwrap(k, bad)
		assert.ErrorIs(t, err, ErrUnwrap)
	}
}

func TestKeyWrapArgs(t *testing.T) {
	_, err := Wrap(make([]byte, 32), make([]byte, 12))
	assert.Error(t, err)
	_, err = Wrap(make([]byte, 7), make([]byte, 16))
	assert.Error(t, err)
	_, err = Unwrap(make([]byte, 32), make([]byte, 16))
	assert.Error(t, err)
	_, err = Unwrap(make([]byte, 32), make([]byte, 41))
	assert.Error(t, err)
}
