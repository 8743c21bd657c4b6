package backupfmt

import (
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf16"
	"unicode/utf8"

	"howett.net/plist"
)

// A small binary-plist writer for NSKeyedArchiver archives, laid out as
// CoreFoundation lays them out: objects in depth-first order with the top
// object first, strings uniqued, integers in the smallest size (negative
// ones in 8 bytes). EncodeMBFile runs once per Manifest.db row, so it
// avoids the reflection of the generic plist encoder.

// kv is a dictionary with a fixed key order.
type kv struct {
	keys []string
	vals []any
}

type bpWriter struct {
	objs    [][]byte
	strings map[string]int
}

// add encodes v (string, int64, []byte, plist.UID, []any, *kv) and its
// children, returning its object index.
func (w *bpWriter) add(v any) (int, error) {
	if s, ok := v.(string); ok {
		if i, ok := w.strings[s]; ok {
			return i, nil
		}
	}
	idx := len(w.objs)
	w.objs = append(w.objs, nil)
	var b []byte
	switch x := v.(type) {
	case string:
		w.strings[x] = idx
		b = appendString(nil, x)
	case int64:
		b = appendInt(nil, x)
	case []byte:
		b = appendMarker(nil, 0x40, len(x))
		b = append(b, x...)
	case plist.UID:
		u := uint64(x)
		n := 1
		for n < 8 && u>>(8*n) != 0 {
			n++
		}
		b = append(b, 0x80|byte(n-1))
		for k := n - 1; k >= 0; k-- {
			b = append(b, byte(u>>(8*k)))
		}
	case []any:
		refs := make([]int, len(x))
		for k, e := range x {
			r, err := w.add(e)
			if err != nil {
				return 0, err
			}
			refs[k] = r
		}
		b = appendRefs(appendMarker(nil, 0xA0, len(x)), refs)
	case *kv:
		refs := make([]int, 2*len(x.keys))
		for k, key := range x.keys {
			r, err := w.add(key)
			if err != nil {
				return 0, err
			}
			refs[k] = r
		}
		for k, val := range x.vals {
			r, err := w.add(val)
			if err != nil {
				return 0, err
			}
			refs[len(x.keys)+k] = r
		}
		b = appendRefs(appendMarker(nil, 0xD0, len(x.keys)), refs)
	default:
		return 0, fmt.Errorf("backupfmt: bplist: unsupported %T", v)
	}
	w.objs[idx] = b
	return idx, nil
}

// Refs are written as 4-byte placeholders and resized in finish.
func appendRefs(b []byte, refs []int) []byte {
	for _, r := range refs {
		b = binary.BigEndian.AppendUint32(b, uint32(r))
	}
	return b
}

func appendMarker(b []byte, m byte, n int) []byte {
	if n < 15 {
		return append(b, m|byte(n))
	}
	return appendInt(append(b, m|0x0F), int64(n))
}

func appendInt(b []byte, v int64) []byte {
	switch {
	case v >= 0 && v <= math.MaxUint8:
		return append(b, 0x10, byte(v))
	case v >= 0 && v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0x11), uint16(v))
	case v >= 0 && v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0x12), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0x13), uint64(v))
}

func appendString(b []byte, s string) []byte {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii || !utf8.ValidString(s) {
		// invalid UTF-8 (never from a device) is kept byte for byte
		return append(appendMarker(b, 0x50, len(s)), s...)
	}
	u := utf16.Encode([]rune(s))
	b = appendMarker(b, 0x60, len(u))
	for _, c := range u {
		b = binary.BigEndian.AppendUint16(b, c)
	}
	return b
}

// finish lays out header, objects (with refs narrowed to the needed size),
// offset table and trailer.
func (w *bpWriter) finish() []byte {
	refSize := 1
	for n := len(w.objs); refSize < 4 && n > 1<<(8*refSize); refSize++ {
	}
	out := []byte("bplist00")
	offsets := make([]int, len(w.objs))
	for i, o := range w.objs {
		offsets[i] = len(out)
		m := o[0] & 0xF0
		if m != 0xA0 && m != 0xD0 {
			out = append(out, o...)
			continue
		}
		// copy the marker and count, then the 4-byte refs narrowed
		hdr := 1
		if o[0]&0x0F == 0x0F {
			hdr += 1 + 1<<(o[1]&0x0F)
		}
		out = append(out, o[:hdr]...)
		for k := hdr; k < len(o); k += 4 {
			r := binary.BigEndian.Uint32(o[k:])
			for s := refSize - 1; s >= 0; s-- {
				out = append(out, byte(r>>(8*s)))
			}
		}
	}
	tableOff := len(out)
	offSize := 1
	for offSize < 8 && tableOff >= 1<<(8*offSize) {
		offSize++
	}
	for _, off := range offsets {
		for s := offSize - 1; s >= 0; s-- {
			out = append(out, byte(off>>(8*s)))
		}
	}
	out = append(out, 0, 0, 0, 0, 0, 0, byte(offSize), byte(refSize))
	out = binary.BigEndian.AppendUint64(out, uint64(len(w.objs)))
	out = binary.BigEndian.AppendUint64(out, 0)
	out = binary.BigEndian.AppendUint64(out, uint64(tableOff))
	return out
}
