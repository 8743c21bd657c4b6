package backupfmt

import (
	"encoding/binary"
	"math"
	"sync"
	"unicode/utf16"
)

// This file is a fast path for DecodeMBFile: a minimal binary-plist reader
// for well-formed NSKeyedArchiver MBFile blobs. A 1.3-million-row
// Manifest.db decodes one blob per row, and the generic plist decoder
// builds maps for every object. The fast path handles only the plain shape
// (format §5.5) and gives up on anything unusual; the generic decoder then
// decides, so both always agree (checked by FuzzDecodeMBFile).

// bpObj is one parsed binary-plist object.
type bpObj struct {
	marker byte
	i      int64  // int value
	u      uint64 // UID value
	b      []byte // data, ASCII string bytes or UTF-16 code units
	refs   []byte // array: n refs; dict: n key refs then n value refs
	n      int    // element count of containers, char count of strings
}

type bplist struct {
	buf     []byte
	refSize int
	objs    []bpObj
}

// beUint reads an n-byte big-endian unsigned integer (n ≤ 8).
func beUint(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// bplistPool recycles parsers: a Manifest.db walk decodes one blob per row
// and the object table was most of its allocations (issue 11).
var bplistPool = sync.Pool{New: func() any { return new(bplist) }}

// release returns p to the pool without references to its buffer.
func (p *bplist) release() {
	clear(p.objs)
	p.buf, p.objs = nil, p.objs[:0]
	if cap(p.objs) <= 1024 {
		bplistPool.Put(p)
	}
}

// parseBplist parses every object of a bplist00 buffer; ok=false on
// anything it does not fully understand. The parser comes from a pool:
// release it when done.
func parseBplist(buf []byte) (*bplist, int, bool) {
	if len(buf) < 8+32 || string(buf[:8]) != "bplist00" {
		return nil, 0, false
	}
	// Trailer (last 32 bytes): 6 unused, offset int size, object ref size,
	// object count, top object, offset table position (all big-endian).
	tr := buf[len(buf)-32:]
	offSize, refSize := int(tr[6]), int(tr[7])
	num, top, tableOff := binary.BigEndian.Uint64(tr[8:]), binary.BigEndian.Uint64(tr[16:]), binary.BigEndian.Uint64(tr[24:])
	if offSize < 1 || offSize > 8 || refSize < 1 || refSize > 8 || num == 0 || num > uint64(len(buf)) || top >= num {
		return nil, 0, false
	}
	// The same trailer rules as the generic parser: the offset table ends
	// exactly at the trailer and its entries can address the whole file.
	end := uint64(len(buf) - 32)
	if tableOff < 9 || tableOff >= end || num*uint64(offSize) != end-tableOff ||
		(refSize < 8 && num > uint64(1)<<(8*refSize)) || (offSize < 8 && uint64(1)<<(8*offSize) <= tableOff) {
		return nil, 0, false
	}
	p := bplistPool.Get().(*bplist)
	p.buf, p.refSize = buf, refSize
	if uint64(cap(p.objs)) < num {
		p.objs = make([]bpObj, num)
	} else {
		p.objs = p.objs[:num]
	}
	for i := uint64(0); i < num; i++ {
		off := beUint(buf[tableOff+i*uint64(offSize) : tableOff+(i+1)*uint64(offSize)])
		if off < 8 || off >= tableOff {
			p.release()
			return nil, 0, false
		}
		o, ok := p.parseObj(int(off), int(tableOff), int(i), int(num))
		if !ok {
			p.release()
			return nil, 0, false
		}
		p.objs[i] = o
	}
	return p, int(top), true
}

// parseObj parses the object at off (objects end before limit). Container
// refs must point to later containers, which rules out cycles.
func (p *bplist) parseObj(off, limit, self, num int) (bpObj, bool) {
	b := p.buf[off:limit]
	m := b[0]
	o := bpObj{marker: m & 0xF0}
	lo := int(m & 0x0F)
	b = b[1:]
	// count reads the element count of data/strings/containers: the low
	// nibble, or 0xF followed by an integer object holding the count.
	count := func() (int, bool) {
		if lo != 0xF {
			return lo, true
		}
		if len(b) < 1 || b[0]&0xF0 != 0x10 || b[0]&0x0F > 3 {
			return 0, false
		}
		n := 1 << (b[0] & 0x0F)
		if len(b) < 1+n {
			return 0, false
		}
		v := beUint(b[1 : 1+n])
		b = b[1+n:]
		if v > uint64(len(p.buf)) {
			return 0, false
		}
		return int(v), true
	}
	switch o.marker {
	case 0x00:
		if m != 0x08 && m != 0x09 {
			return o, false
		}
		o.marker = m
	case 0x10:
		if lo > 3 || len(b) < 1<<lo {
			return o, false
		}
		v := beUint(b[:1<<lo])
		o.i = int64(v) // 1/2/4 bytes are unsigned, 8 bytes signed
	case 0x80:
		if len(b) < lo+1 || lo+1 > 8 {
			return o, false
		}
		o.u = beUint(b[:lo+1])
	case 0x40, 0x50, 0x60:
		n, ok := count()
		if !ok {
			return o, false
		}
		size := n
		if o.marker == 0x60 {
			size = 2 * n
		}
		if size > len(b) {
			return o, false
		}
		o.b, o.n = b[:size], n
	case 0xA0, 0xD0:
		n, ok := count()
		if !ok {
			return o, false
		}
		refs := n
		if o.marker == 0xD0 {
			refs = 2 * n
		}
		if refs > len(b)/p.refSize {
			return o, false
		}
		o.refs, o.n = b[:refs*p.refSize], n
		for k := 0; k < refs; k++ {
			r := int(beUint(o.refs[k*p.refSize : (k+1)*p.refSize]))
			if r >= num {
				return o, false
			}
			if mk := p.buf[p.offsetHint(r)]; r <= self && (mk&0xF0 == 0xA0 || mk&0xF0 == 0xD0 || mk&0xF0 == 0xC0) {
				return o, false
			}
		}
	default:
		return o, false // reals, dates, sets, … never appear in an MBFile archive
	}
	return o, true
}

// offsetHint returns the offset of object r (valid: checked by the caller's
// table bounds) for peeking at its marker.
func (p *bplist) offsetHint(r int) int {
	tr := p.buf[len(p.buf)-32:]
	offSize := int(tr[6])
	tableOff := int(binary.BigEndian.Uint64(tr[24:]))
	off := int(beUint(p.buf[tableOff+r*offSize : tableOff+(r+1)*offSize]))
	if off < 8 || off >= tableOff {
		return 8 // the caller's own loop rejects this offset later
	}
	return off
}

func (p *bplist) ref(refs []byte, k int) int {
	return int(beUint(refs[k*p.refSize : (k+1)*p.refSize]))
}

// str returns a string object's value.
func (p *bplist) str(i int) (string, bool) {
	o := &p.objs[i]
	switch o.marker {
	case 0x50:
		for _, c := range o.b {
			if c >= 0x80 {
				return "", false
			}
		}
		return string(o.b), true
	case 0x60:
		u := make([]uint16, o.n)
		for k := range u {
			u[k] = binary.BigEndian.Uint16(o.b[2*k:])
			if u[k] >= 0xD800 && u[k] < 0xE000 {
				return "", false
			}
		}
		return string(utf16.Decode(u)), true
	}
	return "", false
}

// knownKeys interns the dictionary keys of an MBFile archive so reading
// them allocates nothing (one blob per Manifest.db row, issue 11).
var knownKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"$class", "$objects", "$top", "$archiver", "$version", "root", "NS.data", "NS.string",
		"NS.keys", "NS.objects", "$classname", "$classes", "Birth", "Digest", "EncryptionKey", "ExtendedAttributes",
		"Flags", "GroupID", "InodeNumber", "LastModified", "LastStatusChange", "Mode", "ProtectionClass",
		"RelativePath", "Target", "Size", "UserID"} {
		m[k] = k
	}
	return m
}()

// key is str for a dictionary key, interning the known ones.
func (p *bplist) key(i int) (string, bool) {
	if o := &p.objs[i]; o.marker == 0x50 {
		if k, ok := knownKeys[string(o.b)]; ok {
			return k, true
		}
	}
	return p.str(i)
}

// dictGet calls fn for each key/value pair of dict object i.
func (p *bplist) dictEach(i int, fn func(key string, val int) bool) bool {
	o := &p.objs[i]
	if o.marker != 0xD0 {
		return false
	}
	for k := 0; k < o.n; k++ {
		key, ok := p.key(p.ref(o.refs, k))
		if !ok || !fn(key, p.ref(o.refs, o.n+k)) {
			return false
		}
	}
	return true
}

// decodeMBFileFast decodes the common shape; ok=false means "ask the
// generic decoder".
func decodeMBFileFast(blob []byte) (*MBFile, bool) {
	p, top, ok := parseBplist(blob)
	if !ok {
		return nil, false
	}
	defer p.release()
	// Top dict: $objects (the object table) and $top.root (UID of the
	// MBFile dict, default 1 as in the generic decoder).
	objects, rootUID, haveTop := -1, uint64(1), false
	if !p.dictEach(top, func(k string, v int) bool {
		switch k {
		case "$objects":
			objects = v
		case "$top":
			haveTop = true
			return p.dictEach(v, func(k string, v int) bool {
				if k == "root" {
					if p.objs[v].marker != 0x80 {
						return false
					}
					rootUID = p.objs[v].u
				}
				return true
			})
		}
		return true
	}) || objects < 0 || p.objs[objects].marker != 0xA0 {
		return nil, false
	}
	_ = haveTop
	arr := &p.objs[objects]
	// resolve maps a UID value to an object index; UID 0 is $null.
	resolve := func(u uint64) (int, bool) {
		if u == 0 || u >= uint64(arr.n) {
			return 0, false
		}
		return p.ref(arr.refs, int(u)), true
	}
	root, ok := resolve(rootUID)
	if !ok || p.objs[root].marker != 0xD0 {
		return nil, false
	}
	// Walk the MBFile dict in key order; a repeated key overwrites, as the
	// generic decoder's map does. Integers must be integer objects, objects
	// UIDs into $objects; anything else falls back to the generic decoder.
	f := &MBFile{}
	ok = p.dictEach(root, func(k string, v int) bool {
		o := &p.objs[v]
		setInt := func(dst func(int64) bool) bool { return o.marker == 0x10 && dst(o.i) }
		switch k {
		case "LastModified":
			return setInt(func(x int64) bool { f.LastModified = x; return true })
		case "LastStatusChange":
			return setInt(func(x int64) bool { f.LastStatusChange = x; return true })
		case "Birth":
			return setInt(func(x int64) bool { f.Birth = x; return true })
		case "Size":
			return setInt(func(x int64) bool { f.Size = x; return x >= 0 })
		case "Mode":
			return setInt(func(x int64) bool { f.Mode = uint16(x); return x >= 0 && x <= math.MaxUint16 })
		case "UserID":
			return setInt(func(x int64) bool { f.UserID = uint32(x); return x >= math.MinInt32 && x <= math.MaxUint32 })
		case "GroupID":
			return setInt(func(x int64) bool { f.GroupID = uint32(x); return x >= math.MinInt32 && x <= math.MaxUint32 })
		case "InodeNumber":
			return setInt(func(x int64) bool { f.InodeNumber = uint64(x); return true })
		case "ProtectionClass":
			return setInt(func(x int64) bool { f.ProtectionClass = int(x); return x >= math.MinInt32 && x <= math.MaxInt32 })
		case "Flags":
			return setInt(func(x int64) bool { f.Flags = int(x); return x >= math.MinInt32 && x <= math.MaxUint32 })
		case "RelativePath", "Target":
			if o.marker != 0x80 {
				return false
			}
			s := ""
			if o.u != 0 {
				si, ok := resolve(o.u)
				if !ok {
					return false
				}
				if s, ok = p.str(si); !ok {
					return false
				}
			}
			if k == "Target" {
				f.Target = s
			} else {
				f.RelativePath = s
			}
		case "Digest", "EncryptionKey", "ExtendedAttributes":
			var d []byte
			switch {
			case o.marker == 0x40:
				d = o.b
			case o.marker == 0x80 && o.u == 0:
			case o.marker == 0x80:
				di, ok := resolve(o.u)
				if !ok {
					return false
				}
				found := false
				if !p.dictEach(di, func(k string, v int) bool {
					if k == "NS.data" {
						if p.objs[v].marker != 0x40 {
							return false
						}
						d, found = p.objs[v].b, true
					}
					return true
				}) || !found {
					return false
				}
			default:
				return false
			}
			if d != nil {
				d = append([]byte{}, d...)
			}
			switch k {
			case "Digest":
				f.Digest = d
			case "EncryptionKey":
				f.EncryptionKey = d
			default:
				f.ExtendedAttributes = d
			}
		case "$class":
			ci, ok := resolve(o.u)
			if o.marker != 0x80 || !ok {
				return false
			}
			name := ""
			if !p.dictEach(ci, func(k string, v int) bool {
				if k == "$classname" {
					s, ok := p.str(v)
					name = s
					return ok
				}
				return true
			}) || name != "MBFile" {
				return false
			}
		}
		return true
	})
	if !ok {
		return nil, false
	}
	return f, true
}
