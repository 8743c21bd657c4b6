package keybag

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testRand is a deterministic byte source for reproducible keybags.
type testRand struct{ r *rand.ChaCha8 }

func (t testRand) Read(p []byte) (int, error) { return t.r.Read(p) }

func newTestRand() testRand { return testRand{rand.NewChaCha8([32]byte{1})} }

func newTestKeybag(t testing.TB, password string, opts NewOptions) (*Keybag, *ClassKeys) {
	t.Helper()
	if opts.Iter == 0 {
		opts.Iter = 10
	}
	if opts.DPIC == 0 {
		opts.DPIC = 10
	}
	opts.Rand = newTestRand()
	kb, ck, err := New(password, opts)
	require.NoError(t, err)
	return kb, ck
}

func TestNewParseUnlock(t *testing.T) {
	kb, ck := newTestKeybag(t, "hunter2", NewOptions{})
	raw := kb.Marshal()
	assert.Equal(t, "VERS", string(raw[:4]))
	parsed, err := Parse(raw)
	require.NoError(t, err)
	assert.Equal(t, kb, parsed)
	assert.True(t, parsed.HasDP)
	assert.Len(t, parsed.Classes, 11)
	assert.EqualValues(t, TypeBackup, parsed.Type)

	got, err := parsed.Unlock("hunter2")
	require.NoError(t, err)
	assert.Equal(t, ck, got)

	_, err = parsed.Unlock("hunter3")
	assert.ErrorIs(t, err, ErrWrongPassword)
}

// TestDeriveKEKChain checks both KDF stages of format §6.2 independently.
func TestDeriveKEKChain(t *testing.T) {
	kb, _ := newTestKeybag(t, "pw", NewOptions{Iter: 7, DPIC: 9})
	k1, err := pbkdf2.Key(sha256.New, "pw", kb.DPSL, 9, 32)
	require.NoError(t, err)
	want, err := pbkdf2.Key(sha1.New, string(k1), kb.Salt, 7, 32)
	require.NoError(t, err)
	got, err := kb.DeriveKEK("pw")
	require.NoError(t, err)
	assert.Equal(t, want, got)

	old, _ := newTestKeybag(t, "pw", NewOptions{Iter: 7, NoDP: true})
	assert.False(t, old.HasDP)
	want, err = pbkdf2.Key(sha1.New, "pw", old.Salt, 7, 32)
	require.NoError(t, err)
	got, err = old.DeriveKEK("pw")
	require.NoError(t, err)
	assert.Equal(t, want, got)
	reparsed, err := Parse(old.Marshal())
	require.NoError(t, err)
	assert.False(t, reparsed.HasDP)
	_, err = reparsed.Unlock("pw")
	assert.NoError(t, err)
}

func TestParseSkipsUnknownTags(t *testing.T) {
	kb, _ := newTestKeybag(t, "x", NewOptions{Classes: []uint32{3, 4}})
	raw := kb.Marshal()
	// insert an unknown tag after VERS and one inside the last class record
	ext := appendTLV(nil, "ZZZZ", []byte{1, 2, 3})
	mod := append(append(append([]byte{}, raw[:12]...), ext...), raw[12:]...)
	mod = append(mod, appendTLV(nil, "SIGN", make([]byte, 20))...)
	parsed, err := Parse(mod)
	require.NoError(t, err)
	assert.Equal(t, kb, parsed)
}

func TestParseMalformed(t *testing.T) {
	kb, _ := newTestKeybag(t, "x", NewOptions{Classes: []uint32{3}})
	raw := kb.Marshal()
	for name, b := range map[string][]byte{
		"truncated header": raw[:len(raw)-3],
		"length past end":  append(append([]byte{}, raw...), 'A', 'B', 'C', 'D', 0, 0, 1, 0),
		"bad int length":   appendTLV(appendTLV(nil, "UUID", make([]byte, 16)), "ITER", []byte{1}),
		"no uuid":          appendU32(nil, "VERS", 5),
	} {
		_, err := Parse(b)
		assert.ErrorIs(t, err, ErrMalformed, name)
	}
	huge := *kb
	huge.DPIC = 1 << 31
	_, err := huge.Unlock("x")
	assert.ErrorIs(t, err, ErrMalformed)
	// a keybag without password-wrapped keys cannot be unlocked
	noKeys := &Keybag{UUID: make([]byte, 16), Salt: []byte{1}, Iter: 1}
	_, err = noKeys.Unlock("x")
	assert.ErrorIs(t, err, ErrMalformed)
}

func TestWrapUnwrapKey(t *testing.T) {
	_, ck := newTestKeybag(t, "x", NewOptions{Classes: []uint32{3, 4}})
	key := bytes.Repeat([]byte{7}, 32)
	w, err := ck.WrapKey(4, key)
	require.NoError(t, err)
	require.Len(t, w, WrappedKeyLen)
	assert.Equal(t, []byte{4, 0, 0, 0}, w[:4], "class is little-endian (format §6.3)")
	got, err := ck.UnwrapKey(w)
	require.NoError(t, err)
	assert.Equal(t, key, got)

	_, err = ck.WrapKey(1, key)
	assert.ErrorIs(t, err, ErrNoKey)
	w[0] = 1
	_, err = ck.UnwrapKey(w)
	assert.ErrorIs(t, err, ErrNoKey)
	w[0] = 3 // right length, wrong class key → integrity failure
	_, err = ck.UnwrapKey(w)
	assert.ErrorIs(t, err, ErrUnwrap)
	_, err = ck.UnwrapKey([]byte{4, 0, 0, 0})
	assert.Error(t, err)
	got, err = ck.UnwrapKeyClass(4, w[4:])
	require.NoError(t, err)
	assert.Equal(t, key, got)
	_, err = ck.UnwrapKeyClass(9, w[4:])
	assert.ErrorIs(t, err, ErrNoKey)
}

func FuzzParse(f *testing.F) {
	kb, _ := newTestKeybag(f, "x", NewOptions{Classes: []uint32{1, 3}})
	f.Add(kb.Marshal())
	old, _ := newTestKeybag(f, "x", NewOptions{NoDP: true, Classes: []uint32{2}})
	f.Add(old.Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		kb, err := Parse(b)
		if err != nil {
			return
		}
		again, err := Parse(kb.Marshal())
		require.NoError(t, err)
		assert.Equal(t, kb.Marshal(), again.Marshal())
	})
}
