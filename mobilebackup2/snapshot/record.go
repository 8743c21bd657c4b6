package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// RecordName is the file name of the verification record, stored beside the
// version's <UDID>/ folder (never inside it: the phone lists that folder).
const RecordName = "ibackup-record.json"

// RecordFormat is the current record format number.
const RecordFormat = 1

// FileSum is what a file looked like when its backup was verified.
type FileSum struct {
	Size int64 `json:"size"`
	// SHA1 is the lowercase hex SHA-1 of the stored bytes, the digest
	// algorithm of the MBFile Digest field (§5.5).
	SHA1 string `json:"sha1"`
}

// Record is the verification record of one backup version: every regular
// file under <UDID>/ with its size and SHA-1, so a later verify detects bit
// rot without the phone.
type Record struct {
	Format  int       `json:"format"`
	UDID    string    `json:"udid"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	// FullBackup is Status.plist IsFullBackup of the run.
	FullBackup bool `json:"fullBackup"`
	// Verified is true when the run's verification passed.
	Verified bool `json:"verified"`
	// Files maps a slash path relative to <UDID>/ ("ab/ab12…", "Manifest.db")
	// to its checksum.
	Files map[string]FileSum `json:"files"`
}

// ReadRecord reads a record file.
func ReadRecord(path string) (*Record, error) {
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

// ParseRecord decodes record bytes.
func ParseRecord(b []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("snapshot: record: %w", err)
	}
	if r.Format != RecordFormat {
		return nil, fmt.Errorf("snapshot: record: unsupported format %d", r.Format)
	}
	if r.Files == nil {
		r.Files = map[string]FileSum{}
	}
	return &r, nil
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
	p := filepath.Join(filepath.Dir(real), RecordName)
	r, err := ReadRecord(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", ErrNoRecord
	}
	return r, p, err
}

// writeRecord writes r atomically and durably to path.
func writeRecord(path string, r *Record) error {
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return fmt.Errorf("snapshot: encode record: %w", err)
	}
	return writeFileSync(path, b)
}

// writeFileSync writes b to path via a temporary file, fsync and rename.
func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return syncDir(filepath.Dir(path))
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
