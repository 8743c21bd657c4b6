package keybag

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrWrongPassword is returned by Unlock when the password does not unwrap
// the class keys.
var ErrWrongPassword = errors.New("keybag: wrong backup password")

// ErrNoKey is returned when a wrapped key names a class the keybag could
// not unlock, or a class whose key type is not supported (Curve25519).
var ErrNoKey = errors.New("keybag: no usable class key")

// MaxIterations bounds ITER and DPIC; real keybags use 10 000 and
// 10 000 000 (format §6.1).
const MaxIterations = 1 << 27

// DeriveKEK turns a password into the key-encryption key (format §6.2):
// PBKDF2-HMAC-SHA256 over DPSL/DPIC when the keybag has them (iOS 10.2+;
// decided by tag presence, not by iOS version — §8 pitfall 24), then
// PBKDF2-HMAC-SHA1 over SALT/ITER, 32 bytes each.
func (kb *Keybag) DeriveKEK(password string) ([]byte, error) {
	if kb.Iter == 0 || len(kb.Salt) == 0 {
		return nil, fmt.Errorf("%w: missing SALT/ITER", ErrMalformed)
	}
	if kb.Iter > MaxIterations || (kb.HasDP && kb.DPIC > MaxIterations) {
		// A damaged count would keep the KDF busy for hours.
		return nil, fmt.Errorf("%w: implausible iteration count (ITER %d, DPIC %d)", ErrMalformed, kb.Iter, kb.DPIC)
	}
	k1 := []byte(password)
	if kb.HasDP {
		if kb.DPIC == 0 {
			return nil, fmt.Errorf("%w: DPIC is 0", ErrMalformed)
		}
		var err error
		if k1, err = pbkdf2.Key(sha256.New, password, kb.DPSL, int(kb.DPIC), 32); err != nil {
			return nil, fmt.Errorf("keybag: pbkdf2: %w", err)
		}
	}
	kek, err := pbkdf2.Key(sha1.New, string(k1), kb.Salt, int(kb.Iter), 32)
	if err != nil {
		return nil, fmt.Errorf("keybag: pbkdf2: %w", err)
	}
	return kek, nil
}

// ClassKeys holds unwrapped protection-class keys. Safe for concurrent use
// after creation (read-only).
type ClassKeys struct {
	keys map[uint32][]byte
}

// Has reports whether the key of class c is available.
func (ck *ClassKeys) Has(c uint32) bool { _, ok := ck.keys[c]; return ok }

// Unlock derives the KEK from password and unwraps every password-wrapped
// AES class key (format §6.2 step 4). An integrity failure means a wrong
// password and returns ErrWrongPassword before anything is decrypted.
func (kb *Keybag) Unlock(password string) (*ClassKeys, error) {
	kek, err := kb.DeriveKEK(password)
	if err != nil {
		return nil, err
	}
	return kb.UnlockWithKEK(kek)
}

// UnlockWithKEK is Unlock with an already derived KEK (lets callers cache
// the slow KDF).
func (kb *Keybag) UnlockWithKEK(kek []byte) (*ClassKeys, error) {
	ck := &ClassKeys{keys: map[uint32][]byte{}}
	tried := 0
	for _, c := range kb.Classes {
		if c.Wrap&WrapPasscode == 0 || len(c.WrappedKey) == 0 || c.KeyType != KeyTypeAES {
			continue
		}
		tried++
		k, err := Unwrap(kek, c.WrappedKey)
		if errors.Is(err, ErrUnwrap) {
			return nil, ErrWrongPassword
		}
		if err != nil {
			return nil, fmt.Errorf("%w: class %d: %v", ErrMalformed, c.Class, err)
		}
		ck.keys[c.Class] = k
	}
	if tried == 0 {
		return nil, fmt.Errorf("%w: no password-wrapped class keys", ErrMalformed)
	}
	return ck, nil
}

// WrappedKeyLen is the length of an EncryptionKey or ManifestKey value:
// class (u32 little-endian) + 40-byte RFC 3394 wrapped 32-byte key.
const WrappedKeyLen = 44

// UnwrapKey unwraps a per-file EncryptionKey or the Manifest.plist
// ManifestKey (format §6.3, §6.4): the first 4 bytes are the class
// (little-endian), the rest is wrapped with that class's key.
func (ck *ClassKeys) UnwrapKey(b []byte) ([]byte, error) {
	if len(b) < 4+24 {
		return nil, fmt.Errorf("keybag: wrapped key of %d bytes too short", len(b))
	}
	class := binary.LittleEndian.Uint32(b)
	k, ok := ck.keys[class]
	if !ok {
		return nil, fmt.Errorf("%w: class %d", ErrNoKey, class)
	}
	key, err := Unwrap(k, b[4:])
	if err != nil {
		return nil, fmt.Errorf("keybag: unwrap key of class %d: %w", class, err)
	}
	return key, nil
}

// UnwrapKeyClass unwraps a 40-byte wrapped key with the key of an explicit
// class, for records whose class prefix is unusable (pre-iOS 10 tools used
// the record's ProtectionClass instead of the prefix, format §6.4).
func (ck *ClassKeys) UnwrapKeyClass(class uint32, wrapped []byte) ([]byte, error) {
	k, ok := ck.keys[class]
	if !ok {
		return nil, fmt.Errorf("%w: class %d", ErrNoKey, class)
	}
	key, err := Unwrap(k, wrapped)
	if err != nil {
		return nil, fmt.Errorf("keybag: unwrap key of class %d: %w", class, err)
	}
	return key, nil
}

// WrapKey wraps key with the key of class and prefixes the class, giving an
// EncryptionKey / ManifestKey value.
func (ck *ClassKeys) WrapKey(class uint32, key []byte) ([]byte, error) {
	k, ok := ck.keys[class]
	if !ok {
		return nil, fmt.Errorf("%w: class %d", ErrNoKey, class)
	}
	w, err := Wrap(k, key)
	if err != nil {
		return nil, err
	}
	return append(binary.LittleEndian.AppendUint32(nil, class), w...), nil
}

// NewOptions configures New. Zero values give real-device defaults
// (ITER 10000, DPIC 10 000 000); tests and the fake device use small counts.
type NewOptions struct {
	Iter    uint32
	DPIC    uint32
	NoDP    bool      // build a pre-iOS 10.2 keybag (SALT/ITER only)
	Classes []uint32  // default 1–11
	Rand    io.Reader // default crypto/rand
}

// New creates a backup keybag (TYPE 1, VERS 5) protected by password, with
// fresh random AES class keys wrapped by the derived KEK (WRAP 2, KTYP 0),
// as the fake device needs (format §9). It returns the keybag and its
// unlocked class keys.
func New(password string, opts NewOptions) (*Keybag, *ClassKeys, error) {
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	random := func(n int) ([]byte, error) {
		b := make([]byte, n)
		if _, err := io.ReadFull(rnd, b); err != nil {
			return nil, fmt.Errorf("keybag: random: %w", err)
		}
		return b, nil
	}
	kb := &Keybag{Version: 5, Type: TypeBackup, Iter: opts.Iter, DPWT: 1, DPIC: opts.DPIC, HasDP: !opts.NoDP}
	if kb.Iter == 0 {
		kb.Iter = 10000
	}
	if kb.DPIC == 0 {
		kb.DPIC = 10_000_000
	}
	var err error
	for _, p := range []struct {
		dst *[]byte
		n   int
	}{{&kb.UUID, 16}, {&kb.HMCK, 40}, {&kb.Salt, 20}, {&kb.DPSL, 20}} {
		if *p.dst, err = random(p.n); err != nil {
			return nil, nil, err
		}
	}
	if !kb.HasDP {
		kb.DPSL, kb.DPIC, kb.DPWT = nil, 0, 0
	}
	kek, err := kb.DeriveKEK(password)
	if err != nil {
		return nil, nil, err
	}
	classes := opts.Classes
	if classes == nil {
		classes = []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	}
	ck := &ClassKeys{keys: map[uint32][]byte{}}
	for _, c := range classes {
		key, err := random(32)
		if err != nil {
			return nil, nil, err
		}
		uuid, err := random(16)
		if err != nil {
			return nil, nil, err
		}
		w, err := Wrap(kek, key)
		if err != nil {
			return nil, nil, err
		}
		kb.Classes = append(kb.Classes, ClassKey{UUID: uuid, Class: c, Wrap: WrapPasscode, KeyType: KeyTypeAES, WrappedKey: w})
		ck.keys[c] = key
	}
	return kb, ck, nil
}
