package backupfmt

import (
	"fmt"
	"strconv"
	"time"
)

// dictReader pulls typed values out of a decoded plist dict, collecting the
// first type error. Unknown keys stay in the map so callers can keep them.
type dictReader struct {
	what string
	m    map[string]any
	err  error
}

func (d *dictReader) fail(key string, v any, want string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %s is %T, want %s", ErrMalformed, d.what, key, v, want)
	}
}

// take removes and returns key.
func (d *dictReader) take(key string) (any, bool) {
	v, ok := d.m[key]
	delete(d.m, key)
	return v, ok
}

func (d *dictReader) str(key string) string {
	v, ok := d.take(key)
	if !ok {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		d.fail(key, v, "string")
	}
	return s
}

// strOrNumber accepts a string or a number (Status.plist Version, format §4.4).
func (d *dictReader) strOrNumber(key string) string {
	v, ok := d.take(key)
	if !ok {
		return ""
	}
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', 1, 64)
	case float32:
		return strconv.FormatFloat(float64(x), 'f', 1, 32)
	case int64, uint64:
		return fmt.Sprintf("%d.0", x)
	}
	d.fail(key, v, "string")
	return ""
}

// strOrData accepts a string or data (Info.plist GUID, format §5.2).
func (d *dictReader) strOrData(key string) string {
	v, ok := d.take(key)
	if !ok {
		return ""
	}
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return fmt.Sprintf("%X", x)
	}
	d.fail(key, v, "string")
	return ""
}

func (d *dictReader) boolean(key string) bool {
	v, ok := d.take(key)
	if !ok {
		return false
	}
	switch x := v.(type) {
	case bool:
		return x
	case int64, uint64:
		n, _ := intValue(x)
		return n != 0
	}
	d.fail(key, v, "bool")
	return false
}

func (d *dictReader) date(key string) time.Time {
	v, ok := d.take(key)
	if !ok {
		return time.Time{}
	}
	t, ok := v.(time.Time)
	if !ok {
		d.fail(key, v, "date")
	}
	return t
}

func (d *dictReader) data(key string) []byte {
	v, ok := d.take(key)
	if !ok {
		return nil
	}
	b, ok := v.([]byte)
	if !ok {
		d.fail(key, v, "data")
	}
	return b
}

func (d *dictReader) dict(key string) map[string]any {
	v, ok := d.take(key)
	if !ok {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		d.fail(key, v, "dict")
	}
	return m
}

func (d *dictReader) strings(key string) []string {
	v, ok := d.take(key)
	if !ok {
		return nil
	}
	a, ok := v.([]any)
	if !ok {
		d.fail(key, v, "array")
		return nil
	}
	out := make([]string, 0, len(a))
	for _, e := range a {
		s, ok := e.(string)
		if !ok {
			d.fail(key, e, "string element")
			continue
		}
		out = append(out, s)
	}
	return out
}

// dataDict reads a dict of name → data.
func (d *dictReader) dataDict(key string) map[string][]byte {
	m := d.dict(key)
	if m == nil {
		return nil
	}
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		b, ok := v.([]byte)
		if !ok {
			d.fail(key+"."+k, v, "data")
			continue
		}
		out[k] = b
	}
	return out
}

// rest returns the keys not consumed, or nil.
func (d *dictReader) rest() map[string]any {
	if len(d.m) == 0 {
		return nil
	}
	return d.m
}

// dictWriter builds a plist dict, skipping zero values of optional keys.
type dictWriter map[string]any

func (w dictWriter) str(key, v string, always bool) {
	if v != "" || always {
		w[key] = v
	}
}

func (w dictWriter) date(key string, t time.Time) {
	if !t.IsZero() {
		w[key] = t.UTC()
	}
}

func (w dictWriter) data(key string, b []byte) {
	if b != nil {
		w[key] = b
	}
}

func (w dictWriter) extra(m map[string]any) {
	for k, v := range m {
		if _, ok := w[k]; !ok {
			w[k] = v
		}
	}
}
