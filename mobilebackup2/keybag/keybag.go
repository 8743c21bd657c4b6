// Package keybag decrypts and encrypts iTunes/Finder backups: the
// BackupKeyBag TLV, password → class keys (both KDF chains), RFC 3394 key
// wrap, per-file and Manifest.db keys, and AES-256-CBC with PKCS#7.
//
// Facts: mobilebackup2-and-backup-format.md §6.
package keybag

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMalformed is wrapped by errors about keybag data that does not parse.
var ErrMalformed = errors.New("keybag: malformed keybag")

// Keybag types (format §6.1 TYPE tag).
const (
	TypeSystem = 0
	TypeBackup = 1
	TypeEscrow = 2
	TypeOTA    = 3
)

// WRAP bits of a class key (format §6.1).
const (
	WrapDevice   = 1
	WrapPasscode = 2
)

// Key types (KTYP).
const (
	KeyTypeAES        = 0
	KeyTypeCurve25519 = 1
)

// Protection classes (format §6.1).
const (
	ClassComplete                             = 1
	ClassCompleteUnlessOpen                   = 2
	ClassCompleteUntilFirstUserAuthentication = 3
	ClassNone                                 = 4
)

// ClassKey is one protection-class record of a keybag.
type ClassKey struct {
	UUID       []byte
	Class      uint32
	Wrap       uint32
	KeyType    uint32
	WrappedKey []byte // WPKY: 40 bytes wrapping a 32-byte key
	PublicKey  []byte // PBKY, optional
}

// Keybag is a parsed BackupKeyBag (format §6.1). HasDP reports whether the
// iOS 10.2+ PBKDF2-SHA256 stage (DPSL/DPIC) is present.
type Keybag struct {
	Version uint32
	Type    uint32
	UUID    []byte
	HMCK    []byte
	Wrap    uint32
	Salt    []byte
	Iter    uint32
	DPWT    uint32
	DPIC    uint32
	DPSL    []byte
	HasDP   bool
	Classes []ClassKey
}

// maxKeybag bounds a keybag: real ones are well under 2 KiB.
const maxKeybag = 1 << 20

// Parse decodes keybag TLV bytes: tag (4 ASCII) + length (u32 BE) + value.
// Attributes before the second UUID belong to the keybag; each later UUID
// starts a class record. Unknown tags are skipped.
func Parse(b []byte) (*Keybag, error) {
	if len(b) > maxKeybag {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	kb := &Keybag{}
	var cur *ClassKey
	seenUUID, seenDPIC, seenDPSL := false, false, false
	for off := 0; off < len(b); {
		if len(b)-off < 8 {
			return nil, fmt.Errorf("%w: truncated tag header at offset %d", ErrMalformed, off)
		}
		tag := string(b[off : off+4])
		n := binary.BigEndian.Uint32(b[off+4:])
		off += 8
		if uint64(n) > uint64(len(b)-off) {
			return nil, fmt.Errorf("%w: tag %q length %d past end", ErrMalformed, tag, n)
		}
		val := b[off : off+int(n)]
		off += int(n)
		u32 := func() (uint32, error) {
			if len(val) != 4 {
				return 0, fmt.Errorf("%w: tag %q has length %d, want 4", ErrMalformed, tag, len(val))
			}
			return binary.BigEndian.Uint32(val), nil
		}
		var err error
		cp := append([]byte(nil), val...)
		if tag == "UUID" {
			if !seenUUID {
				seenUUID = true
				kb.UUID = cp
				continue
			}
			kb.Classes = append(kb.Classes, ClassKey{UUID: cp})
			cur = &kb.Classes[len(kb.Classes)-1]
			continue
		}
		if cur != nil {
			switch tag {
			case "CLAS":
				cur.Class, err = u32()
			case "WRAP":
				cur.Wrap, err = u32()
			case "KTYP":
				cur.KeyType, err = u32()
			case "WPKY":
				cur.WrappedKey = cp
			case "PBKY":
				cur.PublicKey = cp
			}
		} else {
			switch tag {
			case "VERS":
				kb.Version, err = u32()
			case "TYPE":
				kb.Type, err = u32()
			case "HMCK":
				kb.HMCK = cp
			case "WRAP":
				kb.Wrap, err = u32()
			case "SALT":
				kb.Salt = cp
			case "ITER":
				kb.Iter, err = u32()
			case "DPWT":
				kb.DPWT, err = u32()
			case "DPIC":
				kb.DPIC, err = u32()
				seenDPIC = true
			case "DPSL":
				kb.DPSL = cp
				seenDPSL = true
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if !seenUUID {
		return nil, fmt.Errorf("%w: no UUID", ErrMalformed)
	}
	kb.HasDP = seenDPIC && seenDPSL
	return kb, nil
}

func appendTLV(b []byte, tag string, val []byte) []byte {
	b = append(b, tag...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(val)))
	return append(b, val...)
}

func appendU32(b []byte, tag string, v uint32) []byte {
	return appendTLV(b, tag, binary.BigEndian.AppendUint32(nil, v))
}

// Marshal encodes kb in the tag order real backup keybags use
// (VERS TYPE UUID HMCK WRAP SALT ITER [DPWT DPIC DPSL], then per class
// UUID CLAS WRAP KTYP WPKY [PBKY]).
func (kb *Keybag) Marshal() []byte {
	var b []byte
	b = appendU32(b, "VERS", kb.Version)
	b = appendU32(b, "TYPE", kb.Type)
	b = appendTLV(b, "UUID", kb.UUID)
	b = appendTLV(b, "HMCK", kb.HMCK)
	b = appendU32(b, "WRAP", kb.Wrap)
	b = appendTLV(b, "SALT", kb.Salt)
	b = appendU32(b, "ITER", kb.Iter)
	if kb.HasDP {
		b = appendU32(b, "DPWT", kb.DPWT)
		b = appendU32(b, "DPIC", kb.DPIC)
		b = appendTLV(b, "DPSL", kb.DPSL)
	}
	for _, c := range kb.Classes {
		b = appendTLV(b, "UUID", c.UUID)
		b = appendU32(b, "CLAS", c.Class)
		b = appendU32(b, "WRAP", c.Wrap)
		b = appendU32(b, "KTYP", c.KeyType)
		b = appendTLV(b, "WPKY", c.WrappedKey)
		if c.PublicKey != nil {
			b = appendTLV(b, "PBKY", c.PublicKey)
		}
	}
	return b
}
