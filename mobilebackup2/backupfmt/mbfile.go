package backupfmt

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"math"

	"howett.net/plist"
)

// File type bits of MBFile.Mode (st_mode), format §5.5.
const (
	ModeTypeMask  = 0o170000
	ModeRegular   = 0o100000
	ModeDirectory = 0o040000
	ModeSymlink   = 0o120000
)

// Files.flags values (low bits derived from the mode, format §5.5). Readers
// test flags&FlagsTypeMask: devices use higher bits internally.
const (
	FlagFile      = 1
	FlagDirectory = 2
	FlagSymlink   = 4
	FlagsTypeMask = 7
)

// MBFile is the metadata of one backed-up item, as archived by the device's
// -[MBFile encodeWithCoder:] into the Files.file column (format §5.5).
// Times are Unix seconds. Flags is the BSD st_flags word, not Files.flags.
type MBFile struct {
	RelativePath       string
	Target             string // symlink target; empty for other types
	LastModified       int64
	LastStatusChange   int64
	Birth              int64
	Size               int64 // plaintext size recorded by the device
	Mode               uint16
	UserID             uint32 // 0xfffffffe is "nobody" (-2 on the wire)
	GroupID            uint32
	InodeNumber        uint64
	ProtectionClass    int
	Flags              int
	Digest             []byte // optional content digest (20 bytes when seen)
	EncryptionKey      []byte // 4-byte LE class + 40-byte wrapped key, encrypted backups only
	ExtendedAttributes []byte // binary plist dict name → data, optional
}

// Type returns the Files.flags type value (FlagFile, FlagDirectory,
// FlagSymlink) for the mode's type bits, or 0 for other types.
func (f *MBFile) Type() int { return FlagsForMode(f.Mode) }

// FlagsForMode maps st_mode type bits to the Files.flags column value
// (device MBDatabaseIndex flagsForMode, format §5.5).
func FlagsForMode(mode uint16) int {
	switch uint32(mode) & ModeTypeMask {
	case ModeRegular:
		return FlagFile
	case ModeDirectory:
		return FlagDirectory
	case ModeSymlink:
		return FlagSymlink
	}
	return 0
}

// FileID returns the fileID of an item: lowercase hex SHA-1 of
// "<domain>-<relativePath>" (format §5.1).
func FileID(domain, relativePath string) string {
	h := sha1.New()
	h.Write([]byte(domain))
	h.Write([]byte{'-'})
	h.Write([]byte(relativePath))
	return hex.EncodeToString(h.Sum(nil))
}

// ValidFileID reports whether s has the form of a fileID (40 lowercase hex).
func ValidFileID(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// EncodeMBFile archives f the way a device does: a binary NSKeyedArchiver
// plist whose $objects are "$null", the MBFile dict, the RelativePath string,
// then Target, the NSMutableData objects (Digest, EncryptionKey,
// ExtendedAttributes) with the NSMutableData class after the first of them,
// and the MBFile class last (real-device-profile.md).
func EncodeMBFile(f *MBFile) ([]byte, error) {
	if f == nil {
		return nil, fmt.Errorf("backupfmt: encode MBFile: nil")
	}
	objects := []any{"$null", nil}
	add := func(v any) plist.UID {
		objects = append(objects, v)
		return plist.UID(len(objects) - 1)
	}
	root := &kv{
		keys: []string{"LastModified", "LastStatusChange", "Birth", "Size", "Mode", "UserID", "GroupID",
			"InodeNumber", "ProtectionClass", "Flags"},
		vals: []any{f.LastModified, f.LastStatusChange, f.Birth, f.Size, int64(f.Mode), int64(int32(f.UserID)),
			int64(int32(f.GroupID)), int64(f.InodeNumber), int64(f.ProtectionClass), int64(f.Flags)},
	}
	set := func(k string, v any) { root.keys = append(root.keys, k); root.vals = append(root.vals, v) }
	set("RelativePath", add(f.RelativePath))
	if f.Target != "" {
		set("Target", add(f.Target))
	}
	var dataClass plist.UID
	addData := func(key string, b []byte) {
		if len(b) == 0 {
			return
		}
		obj := &kv{keys: []string{"NS.data", "$class"}, vals: []any{b, nil}}
		set(key, add(obj))
		if dataClass == 0 {
			dataClass = add(&kv{keys: []string{"$classname", "$classes"},
				vals: []any{"NSMutableData", []any{"NSMutableData", "NSData", "NSObject"}}})
		}
		obj.vals[1] = dataClass
	}
	addData("Digest", f.Digest)
	addData("EncryptionKey", f.EncryptionKey)
	addData("ExtendedAttributes", f.ExtendedAttributes)
	set("$class", add(&kv{keys: []string{"$classname", "$classes"}, vals: []any{"MBFile", []any{"MBFile", "NSObject"}}}))
	objects[1] = root
	w := &bpWriter{strings: map[string]int{}}
	_, err := w.add(&kv{
		keys: []string{"$version", "$archiver", "$top", "$objects"},
		vals: []any{int64(100000), "NSKeyedArchiver", &kv{keys: []string{"root"}, vals: []any{plist.UID(1)}}, objects},
	})
	if err != nil {
		return nil, fmt.Errorf("backupfmt: encode MBFile: %w", err)
	}
	return w.finish(), nil
}

// archive is a decoded NSKeyedArchiver object table.
type archive struct{ objects []any }

// resolve follows a UID into $objects; other values are returned as is.
func (a *archive) resolve(v any) (any, error) {
	u, ok := v.(plist.UID)
	if !ok {
		return v, nil
	}
	if uint64(u) >= uint64(len(a.objects)) {
		return nil, fmt.Errorf("%w: MBFile: UID %d outside $objects (%d)", ErrMalformed, u, len(a.objects))
	}
	if u == 0 {
		return nil, nil // $objects[0] is "$null"
	}
	return a.objects[u], nil
}

// className returns the $classname of an archived object dict, or "".
func (a *archive) className(obj map[string]any) string {
	c, err := a.resolve(obj["$class"])
	if err != nil {
		return ""
	}
	m, _ := c.(map[string]any)
	name, _ := m["$classname"].(string)
	return name
}

// str decodes an archived string (inline, NSString or NSMutableString).
func (a *archive) str(v any) (string, error) {
	r, err := a.resolve(v)
	if err != nil {
		return "", err
	}
	switch x := r.(type) {
	case string:
		return x, nil
	case map[string]any:
		if s, ok := x["NS.string"].(string); ok {
			return s, nil
		}
	case nil:
		return "", nil
	}
	return "", fmt.Errorf("%w: MBFile: expected string, got %T", ErrMalformed, r)
}

// data decodes archived bytes (inline data, NSData or NSMutableData).
func (a *archive) data(v any) ([]byte, error) {
	r, err := a.resolve(v)
	if err != nil {
		return nil, err
	}
	switch x := r.(type) {
	case []byte:
		return x, nil
	case map[string]any:
		d, err := a.resolve(x["NS.data"])
		if err != nil {
			return nil, err
		}
		if b, ok := d.([]byte); ok {
			return b, nil
		}
		if d == nil {
			return nil, nil
		}
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("%w: MBFile: expected data, got %T", ErrMalformed, r)
}

// intValue converts a decoded plist number to int64.
func intValue(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case uint64:
		if x > math.MaxInt64 {
			return int64(x), true // two's complement, as CoreFoundation writes it
		}
		return int64(x), true
	case float64:
		if x >= math.MinInt64 && x <= math.MaxInt64 {
			return int64(x), true
		}
	case float32:
		return int64(x), true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// DecodeMBFile decodes a Files.file blob. Unknown keys and classes other
// than the root's are ignored; missing integer keys read as zero; a root
// object that is not an MBFile, dangling UIDs and wrong value types are
// errors wrapping ErrMalformed.
func DecodeMBFile(b []byte) (*MBFile, error) {
	if f, ok := decodeMBFileFast(b); ok {
		return f, nil
	}
	return decodeMBFileGeneric(b)
}

// decodeMBFileGeneric decodes any archive shape with the plist library.
func decodeMBFileGeneric(b []byte) (*MBFile, error) {
	var top map[string]any
	if err := unmarshalPlist(b, &top); err != nil {
		return nil, fmt.Errorf("backupfmt: MBFile: %w", err)
	}
	objs, ok := top["$objects"].([]any)
	if !ok {
		return nil, fmt.Errorf("%w: MBFile: no $objects array", ErrMalformed)
	}
	a := &archive{objects: objs}
	rootRef := any(plist.UID(1))
	if t, ok := top["$top"].(map[string]any); ok {
		if r, ok := t["root"]; ok {
			rootRef = r
		}
	}
	if _, isUID := rootRef.(plist.UID); !isUID {
		return nil, fmt.Errorf("%w: MBFile: $top.root is not a UID", ErrMalformed)
	}
	r, err := a.resolve(rootRef)
	if err != nil {
		return nil, err
	}
	root, ok := r.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: MBFile: root object is %T", ErrMalformed, r)
	}
	if name := a.className(root); name != "" && name != "MBFile" {
		return nil, fmt.Errorf("%w: MBFile: root class is %q", ErrMalformed, name)
	}
	f := &MBFile{}
	ints := []struct {
		key string
		set func(int64) bool
	}{
		{"LastModified", func(v int64) bool { f.LastModified = v; return true }},
		{"LastStatusChange", func(v int64) bool { f.LastStatusChange = v; return true }},
		{"Birth", func(v int64) bool { f.Birth = v; return true }},
		{"Size", func(v int64) bool { f.Size = v; return v >= 0 }},
		{"Mode", func(v int64) bool { f.Mode = uint16(v); return v >= 0 && v <= math.MaxUint16 }},
		{"UserID", func(v int64) bool { f.UserID = uint32(v); return v >= math.MinInt32 && v <= math.MaxUint32 }},
		{"GroupID", func(v int64) bool { f.GroupID = uint32(v); return v >= math.MinInt32 && v <= math.MaxUint32 }},
		{"InodeNumber", func(v int64) bool { f.InodeNumber = uint64(v); return true }},
		{"ProtectionClass", func(v int64) bool { f.ProtectionClass = int(v); return v >= math.MinInt32 && v <= math.MaxInt32 }},
		{"Flags", func(v int64) bool { f.Flags = int(v); return v >= math.MinInt32 && v <= math.MaxUint32 }},
	}
	for _, it := range ints {
		raw, ok := root[it.key]
		if !ok {
			continue
		}
		v, ok := intValue(raw)
		if !ok {
			return nil, fmt.Errorf("%w: MBFile: %s is %T, not a number", ErrMalformed, it.key, raw)
		}
		if !it.set(v) {
			return nil, fmt.Errorf("%w: MBFile: %s %d out of range", ErrMalformed, it.key, v)
		}
	}
	if f.RelativePath, err = a.str(root["RelativePath"]); err != nil {
		return nil, fmt.Errorf("backupfmt: RelativePath: %w", err)
	}
	if f.Target, err = a.str(root["Target"]); err != nil {
		return nil, fmt.Errorf("backupfmt: Target: %w", err)
	}
	for _, d := range []struct {
		key string
		dst *[]byte
	}{{"Digest", &f.Digest}, {"EncryptionKey", &f.EncryptionKey}, {"ExtendedAttributes", &f.ExtendedAttributes}} {
		if *d.dst, err = a.data(root[d.key]); err != nil {
			return nil, fmt.Errorf("backupfmt: %s: %w", d.key, err)
		}
	}
	return f, nil
}
