package backupfmt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// ErrInvalid is wrapped by Check errors: the file parsed but holds values a
// device would refuse.
var ErrInvalid = errors.New("backupfmt: invalid value")

// Status.plist values (format §4.4).
const (
	StatusVersion = "3.3" // written by iOS 10+ devices

	BackupStateNew   = "new"
	BackupStateOld   = "old"
	BackupStateEmpty = "empty"

	SnapshotUploading = "uploading"
	SnapshotMoving    = "moving"
	SnapshotRemoving  = "removing"
	SnapshotFinished  = "finished"
)

// Status is Status.plist, written by the device (binary) at each phase of a
// backup (format §4.4).
type Status struct {
	Version       string // "3.3"; the reader also accepts a number
	UUID          string // uppercase 8-4-4-4-12
	Date          time.Time
	BackupState   string // new, old, empty
	SnapshotState string // uploading, moving, removing, finished
	IsFullBackup  bool
	Extra         map[string]any // other keys (e.g. legacy "Backup Success"), kept on write
}

// ParseStatus decodes Status.plist bytes (binary or XML).
func ParseStatus(b []byte) (*Status, error) {
	var m map[string]any
	if err := unmarshalPlist(b, &m); err != nil {
		return nil, fmt.Errorf("backupfmt: Status.plist: %w", err)
	}
	d := &dictReader{what: "Status.plist", m: m}
	s := &Status{
		Version:       d.strOrNumber("Version"),
		UUID:          d.str("UUID"),
		Date:          d.date("Date"),
		BackupState:   d.str("BackupState"),
		SnapshotState: d.str("SnapshotState"),
		IsFullBackup:  d.boolean("IsFullBackup"),
	}
	s.Extra = d.rest()
	if d.err != nil {
		return nil, d.err
	}
	return s, nil
}

// Marshal encodes s as a binary plist, as the device writes it.
func (s *Status) Marshal() ([]byte, error) {
	w := dictWriter{}
	w.str("Version", s.Version, true)
	w.str("UUID", s.UUID, false)
	w.date("Date", s.Date)
	w.str("BackupState", s.BackupState, true)
	w.str("SnapshotState", s.SnapshotState, true)
	w["IsFullBackup"] = s.IsFullBackup
	w.extra(s.Extra)
	return marshalPlist(map[string]any(w), true)
}

// Check reports values a device refuses on restore (format §7.2): Version
// outside [2.4, 4.0), BackupState not "new", unknown SnapshotState.
// An unfinished snapshot is not an error here; see Finished.
func (s *Status) Check() error {
	v, err := strconv.ParseFloat(s.Version, 64)
	if err != nil || v < 2.4 || v >= 4.0 {
		return fmt.Errorf("%w: Status.plist Version %q (need 2.4 ≤ v < 4.0)", ErrInvalid, s.Version)
	}
	switch s.BackupState {
	case BackupStateNew:
	case BackupStateOld, BackupStateEmpty, "":
		return fmt.Errorf("%w: Status.plist BackupState %q (restore needs %q)", ErrInvalid, s.BackupState, BackupStateNew)
	default:
		return fmt.Errorf("%w: Status.plist BackupState %q unknown", ErrInvalid, s.BackupState)
	}
	switch s.SnapshotState {
	case SnapshotUploading, SnapshotMoving, SnapshotRemoving, SnapshotFinished:
	default:
		return fmt.Errorf("%w: Status.plist SnapshotState %q unknown", ErrInvalid, s.SnapshotState)
	}
	return nil
}

// Finished reports whether the last backup run completed.
func (s *Status) Finished() bool { return s.SnapshotState == SnapshotFinished }

// ReadStatus reads and parses a Status.plist file.
func ReadStatus(path string) (*Status, error) {
	b, err := readMeta(path)
	if err != nil {
		return nil, err
	}
	return ParseStatus(b)
}

// WriteStatus writes s to path atomically (binary plist).
func WriteStatus(path string, s *Status) error {
	b, err := s.Marshal()
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, b)
}

// maxMetaSize bounds the plist metadata files read into memory. Real
// Info.plist files carry app icons and reach a few MiB.
const maxMetaSize = 256 << 20

// readMeta reads a metadata file, refusing empty and absurdly big files.
func readMeta(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("backupfmt: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("backupfmt: %w", err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%w: %s is a directory", ErrMalformed, path)
	}
	if st.Size() == 0 {
		return nil, fmt.Errorf("backupfmt: %s: %w", filepath.Base(path), ErrEmpty)
	}
	if st.Size() > maxMetaSize {
		return nil, fmt.Errorf("%w: %s is %d bytes", ErrMalformed, path, st.Size())
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("backupfmt: %w", err)
	}
	return b, nil
}

// WriteFileAtomic writes data to a temporary file beside path, syncs it
// and renames it over path (mode 0644), so readers never see a partial file.
func WriteFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("backupfmt: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backupfmt: write %s: %w", path, err)
	}
	return nil
}
