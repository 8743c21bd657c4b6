package backupfmt

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
)

// mbdbMagic is the Manifest.mbdb header: "mbdb" + version 5.0 (format §5.7).
var mbdbMagic = []byte{'m', 'b', 'd', 'b', 5, 0}

// mbdbNull is the string length meaning "absent".
const mbdbNull = 0xFFFF

// MBDBReader streams records out of a legacy Manifest.mbdb (iOS 5–9,
// format §5.7). All integers are big-endian; strings are u16 length + bytes
// with 0xFFFF for absent. Memory per record is bounded by the format
// (strings < 64 KiB, ≤ 255 properties).
type MBDBReader struct {
	r   *bufio.Reader
	n   int64 // bytes consumed, for error messages
	err error
}

// NewMBDBReader checks the header and returns a reader positioned at the
// first record.
func NewMBDBReader(r io.Reader) (*MBDBReader, error) {
	m := &MBDBReader{r: bufio.NewReaderSize(r, 64<<10)}
	var hdr [6]byte
	if _, err := io.ReadFull(m.r, hdr[:]); err != nil {
		return nil, fmt.Errorf("%w: Manifest.mbdb header: %v", ErrMalformed, err)
	}
	m.n = 6
	if string(hdr[:4]) != "mbdb" {
		return nil, fmt.Errorf("%w: Manifest.mbdb: bad magic %q", ErrMalformed, hdr[:4])
	}
	if hdr[4] != 5 {
		return nil, fmt.Errorf("%w: Manifest.mbdb: unsupported version %d.%d", ErrMalformed, hdr[4], hdr[5])
	}
	return m, nil
}

func (m *MBDBReader) read(p []byte) {
	if m.err != nil {
		return
	}
	n, err := io.ReadFull(m.r, p)
	m.n += int64(n)
	if err != nil {
		m.err = err
	}
}

func (m *MBDBReader) u8() uint8 {
	var b [1]byte
	m.read(b[:])
	return b[0]
}

func (m *MBDBReader) u16() uint16 {
	var b [2]byte
	m.read(b[:])
	return binary.BigEndian.Uint16(b[:])
}

func (m *MBDBReader) u32() uint32 {
	var b [4]byte
	m.read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

func (m *MBDBReader) u64() uint64 {
	var b [8]byte
	m.read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// bytes reads one mbdb string; nil for the absent marker.
func (m *MBDBReader) bytes() []byte {
	n := m.u16()
	if m.err != nil || n == mbdbNull {
		return nil
	}
	b := make([]byte, n)
	m.read(b)
	return b
}

// Next returns the next record, or io.EOF after the last one. A record cut
// short is an error wrapping ErrMalformed and io.ErrUnexpectedEOF.
func (m *MBDBReader) Next() (Record, error) {
	if m.err != nil {
		return Record{}, m.err
	}
	if _, err := m.r.Peek(1); err == io.EOF {
		m.err = io.EOF
		return Record{}, io.EOF
	}
	start := m.n
	// Field order of format §5.7 (= device -[MBFile encode:]): Domain,
	// Path, LinkTarget, DataHash, EncryptionKey, then fixed-size fields,
	// then the property pairs. Read errors stick in m.err and are checked
	// once at the end.
	dom := m.bytes()
	path := m.bytes()
	f := &MBFile{}
	f.Target = string(m.bytes())
	f.Digest = m.bytes()
	f.EncryptionKey = m.bytes()
	f.Mode = m.u16()
	f.InodeNumber = m.u64()
	f.UserID = m.u32()
	f.GroupID = m.u32()
	f.LastModified = int64(m.u32())
	f.LastStatusChange = int64(m.u32())
	f.Birth = int64(m.u32())
	size := m.u64()
	f.ProtectionClass = int(m.u8())
	nprops := int(m.u8())
	var xattrs map[string]any
	for i := 0; i < nprops && m.err == nil; i++ {
		name := string(m.bytes())
		val := m.bytes()
		if xattrs == nil {
			xattrs = map[string]any{}
		}
		if val == nil {
			val = []byte{}
		}
		xattrs[name] = val
	}
	if m.err != nil {
		err := m.err
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		m.err = fmt.Errorf("%w: Manifest.mbdb record at offset %d: %w", ErrMalformed, start, err)
		return Record{}, m.err
	}
	if size > math.MaxInt64 {
		m.err = fmt.Errorf("%w: Manifest.mbdb record at offset %d: size %d", ErrMalformed, start, size)
		return Record{}, m.err
	}
	f.Size = int64(size)
	f.RelativePath = string(path)
	r := Record{Domain: string(dom), RelativePath: f.RelativePath, Flags: f.Type(), File: f}
	r.FileID = FileID(r.Domain, r.RelativePath)
	// Properties are extended attributes; carry them the way MBFile does
	// (a binary plist dict name → data) so both manifests look alike.
	if xattrs != nil {
		b, err := marshalPlist(xattrs, true)
		if err != nil {
			return Record{}, err
		}
		f.ExtendedAttributes = b
	}
	return r, nil
}

// Offset returns the number of bytes consumed so far.
func (m *MBDBReader) Offset() int64 { return m.n }

// MBDBWriter writes a legacy Manifest.mbdb, for fake iOS 5–9 devices and
// repairs of mbdb-era backups.
type MBDBWriter struct {
	w   *bufio.Writer
	err error
}

// NewMBDBWriter writes the header and returns a writer. Call Flush at the end.
func NewMBDBWriter(w io.Writer) (*MBDBWriter, error) {
	m := &MBDBWriter{w: bufio.NewWriterSize(w, 64<<10)}
	if _, err := m.w.Write(mbdbMagic); err != nil {
		return nil, fmt.Errorf("backupfmt: Manifest.mbdb: %w", err)
	}
	return m, nil
}

func (m *MBDBWriter) put(b []byte) {
	if m.err == nil {
		_, m.err = m.w.Write(b)
	}
}

// str writes one string (length checked by the caller); empty nullable
// strings are written as absent.
func (m *MBDBWriter) str(b []byte, null bool) {
	if null && len(b) == 0 {
		m.put([]byte{0xFF, 0xFF})
		return
	}
	m.put(binary.BigEndian.AppendUint16(nil, uint16(len(b))))
	m.put(b)
}

// Add appends one record. Domain and RelativePath come from r; the rest from
// r.File (required). Empty Target, Digest and EncryptionKey are written as
// absent; ExtendedAttributes (a plist dict of name → data) become the
// record's properties, sorted by name.
func (m *MBDBWriter) Add(r Record) error {
	if m.err != nil {
		return m.err
	}
	f := r.File
	if f == nil {
		return fmt.Errorf("backupfmt: Manifest.mbdb: record %s/%s has no MBFile", r.Domain, r.RelativePath)
	}
	var names []string
	var xattrs map[string]any
	if len(f.ExtendedAttributes) > 0 {
		if err := unmarshalPlist(f.ExtendedAttributes, &xattrs); err != nil {
			return fmt.Errorf("backupfmt: Manifest.mbdb: extended attributes of %s: %w", r.RelativePath, err)
		}
		for k := range xattrs {
			names = append(names, k)
		}
		sort.Strings(names)
		if len(names) > 255 {
			return fmt.Errorf("backupfmt: Manifest.mbdb: %d extended attributes (max 255)", len(names))
		}
	}
	if f.Size < 0 || f.LastModified < 0 || f.LastModified > math.MaxUint32 ||
		f.LastStatusChange < 0 || f.LastStatusChange > math.MaxUint32 || f.Birth < 0 || f.Birth > math.MaxUint32 ||
		f.ProtectionClass < 0 || f.ProtectionClass > 255 {
		return fmt.Errorf("backupfmt: Manifest.mbdb: %s: value out of range for mbdb", r.RelativePath)
	}
	strs := []struct {
		b    []byte
		null bool
	}{{[]byte(r.Domain), false}, {[]byte(r.RelativePath), false}, {[]byte(f.Target), true}, {f.Digest, true}, {f.EncryptionKey, true}}
	vals := make([][]byte, len(names))
	for i, k := range names {
		switch v := xattrs[k].(type) {
		case []byte:
			vals[i] = v
		case string:
			vals[i] = []byte(v)
		default:
			return fmt.Errorf("backupfmt: Manifest.mbdb: extended attribute %q is %T", k, v)
		}
		if len(k) >= mbdbNull || len(vals[i]) >= mbdbNull {
			return fmt.Errorf("backupfmt: Manifest.mbdb: extended attribute %q too long", k)
		}
	}
	for _, s := range strs {
		if len(s.b) >= mbdbNull {
			return fmt.Errorf("backupfmt: Manifest.mbdb: %s: string of %d bytes too long", r.RelativePath, len(s.b))
		}
	}
	// Everything is validated: from here on the record is written whole.
	for _, s := range strs {
		m.str(s.b, s.null)
	}
	var b []byte
	b = binary.BigEndian.AppendUint16(b, f.Mode)
	b = binary.BigEndian.AppendUint64(b, f.InodeNumber)
	b = binary.BigEndian.AppendUint32(b, f.UserID)
	b = binary.BigEndian.AppendUint32(b, f.GroupID)
	b = binary.BigEndian.AppendUint32(b, uint32(f.LastModified))
	b = binary.BigEndian.AppendUint32(b, uint32(f.LastStatusChange))
	b = binary.BigEndian.AppendUint32(b, uint32(f.Birth))
	b = binary.BigEndian.AppendUint64(b, uint64(f.Size))
	b = append(b, uint8(f.ProtectionClass), uint8(len(names)))
	m.put(b)
	for i, k := range names {
		m.str([]byte(k), false)
		m.str(vals[i], false)
	}
	if m.err != nil {
		return fmt.Errorf("backupfmt: Manifest.mbdb: %w", m.err)
	}
	return nil
}

// Flush writes buffered data to the underlying writer.
func (m *MBDBWriter) Flush() error {
	if m.err == nil {
		m.err = m.w.Flush()
	}
	if m.err != nil {
		return fmt.Errorf("backupfmt: Manifest.mbdb: %w", m.err)
	}
	return nil
}
