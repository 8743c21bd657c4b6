package snapshot

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// RecordName is the file name of the verification record (format 2),
// stored beside the version's <UDID>/ folder (never inside it: the phone
// lists that folder).
const RecordName = "ibackup-record.txt"

// LegacyRecordName is the format 1 record (one JSON object) written by
// earlier releases; it is still read.
const LegacyRecordName = "ibackup-record.json"

// RecordFormat is the current record format number.
const RecordFormat = 2

// FileSum is what a file looked like when its backup was verified (the
// format 1 map value).
type FileSum struct {
	Size int64 `json:"size"`
	// SHA1 is the lowercase hex SHA-1 of the stored bytes, the digest
	// algorithm of the MBFile Digest field (§5.5).
	SHA1 string `json:"sha1"`
}

// Record is the verification record of one backup version: every regular
// file under <UDID>/ with its size and SHA-1, so a later verify detects bit
// rot without the phone.
//
// A format 2 record is a text file: one header line, then one line per
// file in ComparePaths order, so it is written while the tree is walked
// and read as a stream (issue 11: a million files). Record then holds
// only the header; Each and NewCursor read the files.
type Record struct {
	Format  int       `json:"format"`
	UDID    string    `json:"udid"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	// FullBackup is Status.plist IsFullBackup of the run.
	FullBackup bool `json:"fullBackup"`
	// Verified is true when the run's verification passed.
	Verified bool `json:"verified"`
	// Count and Bytes are the number of files and their total size.
	Count int64 `json:"count"`
	Bytes int64 `json:"bytes"`
	// Dev is the device number of the file system the inode numbers of
	// the entries belong to (0 unknown).
	Dev uint64 `json:"dev,omitempty"`
	// Files is set for a format 1 record (read whole) and may be set by a
	// caller committing a small record; nil for a format 2 record read
	// from disk (use Each).
	Files map[string]FileSum `json:"files,omitempty"`

	path string // format 2 file holding the entries; "" when Files is the source
}

// ReadRecord reads a record file: the header of a format 2 record, the
// whole of a format 1 record.
func ReadRecord(path string) (*Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	defer f.Close()
	head := make([]byte, headerSize)
	n, _ := f.ReadAt(head, 0)
	head = head[:n]
	if isFormat2(head) {
		r, err := parseHeader(head)
		if err != nil {
			return nil, fmt.Errorf("%w (%s)", err, path)
		}
		r.path = path
		return r, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	r, err := ParseRecord(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return r, nil
}

// ParseRecord decodes the bytes of a format 1 (JSON) record.
func ParseRecord(b []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("snapshot: record: %w", err)
	}
	if r.Format != 1 {
		return nil, fmt.Errorf("snapshot: record: unsupported format %d", r.Format)
	}
	if r.Files == nil {
		r.Files = map[string]FileSum{}
	}
	r.Count, r.Bytes = int64(len(r.Files)), 0
	for _, s := range r.Files {
		r.Bytes += s.Size
	}
	return &r, nil
}

// ReadRecordIn reads the record kept in a version directory (the parent
// of its <UDID>/ folder): format 2 when present, else format 1. It returns
// an error wrapping os.ErrNotExist when there is none.
func ReadRecordIn(dir string) (*Record, string, error) {
	p := filepath.Join(dir, RecordName)
	r, err := ReadRecord(p)
	if errors.Is(err, os.ErrNotExist) {
		p = filepath.Join(dir, LegacyRecordName)
		r, err = ReadRecord(p)
	}
	return r, p, err
}

// ErrNoRecord reports a backup without a verification record (made by
// another tool, or before the first ibackup run).
var ErrNoRecord = errors.New("snapshot: backup has no verification record")

// RecordFor returns the verification record of the backup at
// backupDir/<udid> (the current version when <udid> is our symlink) and the
// path of the record. It returns ErrNoRecord for a plain directory.
func RecordFor(backupDir, udid string) (*Record, string, error) {
	real, err := filepath.EvalSymlinks(filepath.Join(backupDir, udid))
	if err != nil {
		return nil, "", fmt.Errorf("snapshot: %w", err)
	}
	r, p, err := ReadRecordIn(filepath.Dir(real))
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", ErrNoRecord
	}
	return r, p, err
}

// Entry is one file of a record.
type Entry struct {
	// Path is the slash path relative to <UDID>/ ("ab/ab12…", "Manifest.db").
	Path string
	Size int64
	// SHA1 is the SHA-1 of the stored bytes (§5.5).
	SHA1 [20]byte
	// Ino is the file's inode number when it was recorded (0 unknown) and
	// MtimeNs its modification time in Unix nanoseconds: a later run takes
	// the checksum over only for the same inode with the same time and size.
	Ino     uint64
	MtimeNs int64
}

// SumHex returns the lowercase hex SHA-1.
func (e Entry) SumHex() string { return hex.EncodeToString(e.SHA1[:]) }

// Each calls fn for every entry in ComparePaths order, streaming a format
// 2 record from disk.
func (r *Record) Each(fn func(Entry) error) error {
	rd, err := r.NewReader()
	if err != nil {
		return err
	}
	defer rd.Close()
	for {
		e, ok, err := rd.Next()
		if err != nil || !ok {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// syncDir fsyncs a directory so renames inside it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("snapshot: sync %s: %w", dir, err)
	}
	return nil
}
