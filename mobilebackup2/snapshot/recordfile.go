package snapshot

// Format 2 of the verification record (issue 11: a million files):
//
//	ibackup-record 2 {"udid":…,"count":…,…}␠␠␠…\n   header, padded to headerSize
//	<sha1 hex> <size> <inode> <mtime ns> <path>\n     one line per file
//
// Lines are in ComparePaths order, the order a lexical directory walk
// visits files, so the record is written while the tree is walked and
// merged with other sorted streams (the previous record, Manifest.db rows
// by fileID) without holding it in memory. A path that could break the
// line (a newline, a control byte, a leading quote) is written Go-quoted.
// The header is rewritten in place when the version is committed.

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

const (
	headerMagic = "ibackup-record 2 "
	// headerSize is the fixed size of the header line, newline included.
	headerSize = 1024
)

// ComparePaths orders slash paths the way a lexical directory walk
// (filepath.WalkDir) visits them: component by component, so "a/b" sorts
// before "a-b". It returns -1, 0 or +1.
func ComparePaths(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x == '/' {
			return -1
		}
		if y == '/' {
			return 1
		}
		if x < y {
			return -1
		}
		return 1
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

func isFormat2(head []byte) bool { return bytes.HasPrefix(head, []byte(headerMagic)) }

func parseHeader(head []byte) (*Record, error) {
	line, _, ok := bytes.Cut(head, []byte{'\n'})
	if !ok || !isFormat2(line) {
		return nil, errors.New("snapshot: record: no header line")
	}
	var r Record
	if err := json.Unmarshal(line[len(headerMagic):], &r); err != nil {
		return nil, fmt.Errorf("snapshot: record header: %w", err)
	}
	if r.Format != RecordFormat {
		return nil, fmt.Errorf("snapshot: record: unsupported format %d", r.Format)
	}
	r.Files = nil
	return &r, nil
}

func encodeHeader(r *Record) ([]byte, error) {
	h := *r
	h.Files, h.Format = nil, RecordFormat
	j, err := json.Marshal(&h)
	if err != nil {
		return nil, fmt.Errorf("snapshot: encode record header: %w", err)
	}
	if len(headerMagic)+len(j)+1 > headerSize {
		return nil, fmt.Errorf("snapshot: record header is %d bytes, more than %d", len(j), headerSize)
	}
	b := make([]byte, headerSize)
	copy(b, headerMagic)
	copy(b[len(headerMagic):], j)
	for i := len(headerMagic) + len(j); i < headerSize-1; i++ {
		b[i] = ' '
	}
	b[headerSize-1] = '\n'
	return b, nil
}

// needsQuote reports whether a path must be written Go-quoted.
func needsQuote(p string) bool {
	if p == "" || p[0] == '"' {
		return true
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			return true
		}
	}
	return false
}

// RecordWriter writes a format 2 record while a tree is walked. Entries
// must come in strictly ascending ComparePaths order.
type RecordWriter struct {
	f     *os.File
	bw    *bufio.Writer
	path  string
	last  string
	first bool
	count int64
	bytes int64
	line  []byte
	done  bool
}

// CreateRecord starts a record file at path (replacing one left behind).
// The header is written by Work.Commit.
func CreateRecord(path string) (*RecordWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	w := &RecordWriter{f: f, bw: bufio.NewWriterSize(f, 64<<10), path: path, first: true}
	if _, err := w.bw.Write(make([]byte, headerSize)); err != nil {
		w.Abort()
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return w, nil
}

// Add appends one entry.
func (w *RecordWriter) Add(e Entry) error {
	if w.done {
		return errors.New("snapshot: record writer finished")
	}
	if !w.first && ComparePaths(w.last, e.Path) >= 0 {
		return fmt.Errorf("snapshot: record: %q after %q is out of order", e.Path, w.last)
	}
	if e.Size < 0 {
		return fmt.Errorf("snapshot: record: %q has negative size", e.Path)
	}
	w.first = false
	w.last = e.Path
	b := w.line[:0]
	b = hex.AppendEncode(b, e.SHA1[:])
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.Size, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, e.Ino, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.MtimeNs, 10)
	b = append(b, ' ')
	if needsQuote(e.Path) {
		b = strconv.AppendQuote(b, e.Path)
	} else {
		b = append(b, e.Path...)
	}
	b = append(b, '\n')
	w.line = b
	if _, err := w.bw.Write(b); err != nil {
		return fmt.Errorf("snapshot: record: %w", err)
	}
	w.count++
	w.bytes += e.Size
	return nil
}

// Finish flushes the entries and returns the record (header fields from
// hdr; Count and Bytes are set here). Its entries can be read at once;
// Work.Commit writes the header and makes it durable.
func (w *RecordWriter) Finish(hdr Record) (*Record, error) {
	if w.done {
		return nil, errors.New("snapshot: record writer finished")
	}
	w.done = true
	err := w.bw.Flush()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(w.path)
		return nil, fmt.Errorf("snapshot: record: %w", err)
	}
	r := hdr
	r.Format, r.Files, r.Count, r.Bytes, r.path = RecordFormat, nil, w.count, w.bytes, w.path
	return &r, nil
}

// Abort closes and removes the unfinished record file.
func (w *RecordWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.f.Close()
	os.Remove(w.path)
}

// RecordReader streams the entries of a record in ComparePaths order.
type RecordReader struct {
	br    *bufio.Reader
	f     *os.File
	list  []string // format 1: sorted paths
	files map[string]FileSum
	i     int
	line  int
	last  string
}

// NewReader opens the record's entries for reading. A format 1 record is
// read from its in-memory map (sorted here).
func (r *Record) NewReader() (*RecordReader, error) {
	if r.path == "" {
		keys := make([]string, 0, len(r.Files))
		for k := range r.Files {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, ComparePaths)
		return &RecordReader{list: keys, files: r.Files}, nil
	}
	f, err := os.Open(r.path)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if _, err := f.Seek(headerSize, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return &RecordReader{f: f, br: bufio.NewReaderSize(f, 64<<10), line: 1}, nil
}

// Close releases the file.
func (rd *RecordReader) Close() error {
	if rd.f == nil {
		return nil
	}
	err := rd.f.Close()
	rd.f = nil
	return err
}

// Next returns the next entry; ok=false at the end.
func (rd *RecordReader) Next() (Entry, bool, error) {
	if rd.br == nil {
		if rd.i >= len(rd.list) {
			return Entry{}, false, nil
		}
		p := rd.list[rd.i]
		rd.i++
		s := rd.files[p]
		e := Entry{Path: p, Size: s.Size}
		if n, err := hex.Decode(e.SHA1[:], []byte(s.SHA1)); err != nil || n != len(e.SHA1) || len(s.SHA1) != 2*len(e.SHA1) {
			return Entry{}, false, fmt.Errorf("snapshot: record: bad SHA-1 %q for %s", s.SHA1, p)
		}
		return e, true, nil
	}
	b, err := rd.br.ReadSlice('\n')
	if errors.Is(err, io.EOF) && len(b) == 0 {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("snapshot: record line %d: %w", rd.line+1, err)
	}
	rd.line++
	e, err := parseLine(b[:len(b)-1])
	if err == nil && rd.line > 2 && ComparePaths(rd.last, e.Path) >= 0 {
		err = errors.New("out of order")
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("snapshot: record line %d: %w", rd.line, err)
	}
	rd.last = e.Path
	return e, true, nil
}

func parseLine(b []byte) (Entry, error) {
	var e Entry
	const hexLen = 2 * sha1.Size
	if len(b) < hexLen+1 || b[hexLen] != ' ' {
		return e, errors.New("malformed")
	}
	if _, err := hex.Decode(e.SHA1[:], b[:hexLen]); err != nil {
		return e, errors.New("malformed SHA-1")
	}
	b = b[hexLen+1:]
	size, b, ok := cutUint(b)
	if !ok || size > math.MaxInt64 {
		return e, errors.New("malformed size")
	}
	e.Size = int64(size)
	if e.Ino, b, ok = cutUint(b); !ok {
		return e, errors.New("malformed inode")
	}
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	mt, b, ok := cutUint(b)
	if !ok || mt > math.MaxInt64 {
		return e, errors.New("malformed time")
	}
	if e.MtimeNs = int64(mt); neg {
		e.MtimeNs = -e.MtimeNs
	}
	p := string(b)
	if strings.HasPrefix(p, `"`) {
		var err error
		if p, err = strconv.Unquote(p); err != nil {
			return e, errors.New("malformed quoted path")
		}
	}
	if p == "" {
		return e, errors.New("empty path")
	}
	e.Path = p
	return e, nil
}

// cutUint parses the decimal number before the next space and returns what
// follows the space.
func cutUint(b []byte) (uint64, []byte, bool) {
	var n uint64
	for i, c := range b {
		if c == ' ' {
			return n, b[i+1:], i > 0
		}
		if c < '0' || c > '9' || i >= 20 {
			return 0, nil, false
		}
		d := uint64(c - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, nil, false
		}
		n = n*10 + d
	}
	return 0, nil, false
}

// Cursor looks entries up by path in ascending ComparePaths order (a merge
// join with another sorted stream), reading the record once.
type Cursor struct {
	rd   *RecordReader
	cur  Entry
	have bool
	end  bool
	err  error
}

// NewCursor opens a cursor on the record's entries.
func (r *Record) NewCursor() (*Cursor, error) {
	rd, err := r.NewReader()
	if err != nil {
		return nil, err
	}
	return &Cursor{rd: rd}, nil
}

// Lookup returns the entry for p. Successive calls must not go backwards
// (equal paths are fine); an earlier path is reported as not found.
func (c *Cursor) Lookup(p string) (Entry, bool, error) {
	for c.err == nil && !c.end {
		if c.have {
			switch ComparePaths(c.cur.Path, p) {
			case 0:
				return c.cur, true, nil
			case 1:
				return Entry{}, false, nil
			}
		}
		c.cur, c.have, c.err = c.rd.Next()
		if c.err == nil && !c.have {
			c.end = true
		}
	}
	return Entry{}, false, c.err
}

// Close releases the cursor.
func (c *Cursor) Close() error { return c.rd.Close() }
