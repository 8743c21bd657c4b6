// Package backupfmt reads and writes the on-disk iTunes/Finder backup format:
// the MBFile NSKeyedArchiver blob, Manifest.db (iOS 10+), the legacy
// Manifest.mbdb (iOS 5–9) and the Info.plist, Status.plist and
// Manifest.plist property lists.
//
// Facts: mobilebackup2-and-backup-format.md §4.4 and §5, and
// real-device-profile.md (the shape real devices write, which the writers here
// reproduce). Encryption lives in package keybag; this package only carries
// the encrypted fields (EncryptionKey, BackupKeyBag, ManifestKey) as bytes.
//
// Every parser here takes untrusted input: it checks bounds, never panics and
// reports malformed data as errors wrapping ErrMalformed.
package backupfmt

import (
	"errors"
	"fmt"

	"howett.net/plist"
)

// ErrMalformed is wrapped by every error about data that does not parse.
var ErrMalformed = errors.New("backupfmt: malformed data")

// ErrEmpty is returned for zero-length metadata files. A zero-length
// Manifest.plist makes the device fail with 205 (format §8 pitfall 5).
var ErrEmpty = errors.New("backupfmt: file is empty")

// ErrNotFound is returned by lookups that find no record.
var ErrNotFound = errors.New("backupfmt: not found")

// unmarshalPlist decodes an XML or binary property list into v. The plist
// library reports some malformed input by panicking; that is turned into
// an error so peer data can never crash the caller.
func unmarshalPlist(b []byte, v any) (err error) {
	if len(b) == 0 {
		return fmt.Errorf("%w: %w", ErrMalformed, ErrEmpty)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: property list: %v", ErrMalformed, r)
		}
	}()
	if _, err := plist.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: property list: %v", ErrMalformed, err)
	}
	return nil
}

// marshalPlist encodes v as a binary or XML (tab-indented) property list.
func marshalPlist(v any, binary bool) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	if binary {
		b, err = plist.Marshal(v, plist.BinaryFormat)
	} else {
		b, err = plist.MarshalIndent(v, plist.XMLFormat, "\t")
	}
	if err != nil {
		return nil, fmt.Errorf("backupfmt: encode property list: %w", err)
	}
	return b, nil
}
