package afc

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrMalformed reports a reply body that does not parse.
var ErrMalformed = errors.New("afc: malformed reply")

// ParseStrings splits a NUL-separated string list (ReadDir replies, the
// key/value lists of GetFileInfo and GetDeviceInfo). A missing final NUL is
// tolerated; an empty body is an empty list.
func ParseStrings(b []byte) []string {
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil
	}
	parts := bytes.Split(b, []byte{0})
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = string(p)
	}
	return out
}

// AppendStrings appends each string with its NUL terminator.
func AppendStrings(b []byte, ss ...string) []byte {
	for _, s := range ss {
		b = AppendCString(b, s)
	}
	return b
}

// ParseKeyValues decodes a "key\0value\0…" list. An odd number of strings is
// malformed. Later duplicates win.
func ParseKeyValues(b []byte) (map[string]string, error) {
	ss := ParseStrings(b)
	if len(ss)%2 != 0 {
		return nil, fmt.Errorf("%w: odd key/value list (%d strings)", ErrMalformed, len(ss))
	}
	m := make(map[string]string, len(ss)/2)
	for i := 0; i < len(ss); i += 2 {
		m[ss[i]] = ss[i+1]
	}
	return m, nil
}

// File types in st_ifmt.
const (
	TypeRegular   = "S_IFREG"
	TypeDirectory = "S_IFDIR"
	TypeSymlink   = "S_IFLNK"
)

// FileInfo is a GetFileInfo reply. Times on the wire are nanoseconds since
// the Unix epoch; sizes are decimal strings.
type FileInfo struct {
	Size       int64
	Blocks     int64
	NLink      int64
	Type       string // st_ifmt: TypeRegular, TypeDirectory, TypeSymlink, ...
	ModTime    time.Time
	BirthTime  time.Time
	LinkTarget string
	// Raw holds every key as sent, including ones not parsed above.
	Raw map[string]string
}

// IsDir reports whether the object is a directory.
func (fi *FileInfo) IsDir() bool { return fi.Type == TypeDirectory }

// ParseFileInfo decodes a GetFileInfo DATA body. Only st_size is required
// (it is what idevicebackup2 reads, libimobiledevice-client-needs.md §4.4).
func ParseFileInfo(b []byte) (*FileInfo, error) {
	kv, err := ParseKeyValues(b)
	if err != nil {
		return nil, err
	}
	fi := &FileInfo{Type: kv["st_ifmt"], LinkTarget: kv["LinkTarget"], Raw: kv}
	num := func(key string, required bool) (int64, error) {
		s, ok := kv[key]
		if !ok {
			if required {
				return 0, fmt.Errorf("%w: no %s", ErrMalformed, key)
			}
			return 0, nil
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: %s=%q", ErrMalformed, key, s)
		}
		return v, nil
	}
	if fi.Size, err = num("st_size", true); err != nil {
		return nil, err
	}
	if fi.Blocks, err = num("st_blocks", false); err != nil {
		return nil, err
	}
	if fi.NLink, err = num("st_nlink", false); err != nil {
		return nil, err
	}
	mt, err := num("st_mtime", false)
	if err != nil {
		return nil, err
	}
	bt, err := num("st_birthtime", false)
	if err != nil {
		return nil, err
	}
	fi.ModTime, fi.BirthTime = time.Unix(0, mt), time.Unix(0, bt)
	return fi, nil
}

// Encode returns the wire body of fi in the order devices send it.
func (fi *FileInfo) Encode() []byte {
	b := AppendStrings(nil,
		"st_size", strconv.FormatInt(fi.Size, 10),
		"st_blocks", strconv.FormatInt(fi.Blocks, 10),
		"st_nlink", strconv.FormatInt(fi.NLink, 10),
		"st_ifmt", fi.Type,
		"st_mtime", strconv.FormatInt(fi.ModTime.UnixNano(), 10),
		"st_birthtime", strconv.FormatInt(fi.BirthTime.UnixNano(), 10))
	if fi.LinkTarget != "" {
		b = AppendStrings(b, "LinkTarget", fi.LinkTarget)
	}
	return b
}
