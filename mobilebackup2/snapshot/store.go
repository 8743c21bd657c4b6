// Package snapshot keeps versioned, atomically swapped copies of an
// iTunes/Finder-layout backup so that the last good backup is never
// modified in place.
//
// Layout under the backup directory DIR:
//
//	DIR/<UDID>                                 symlink → .ibackup/<UDID>/versions/<ID>/<UDID>
//	DIR/.ibackup/<UDID>/versions/<ID>/<UDID>/   one complete backup (standard layout)
//	DIR/.ibackup/<UDID>/versions/<ID>/ibackup-record.txt    its verification record (format 1: .json)
//	DIR/.ibackup/<UDID>/work-<ID>/              the run in progress (deleted on failure)
//	DIR/.ibackup/<UDID>/lock                    flock held while a run is active
//
// DIR/<UDID> is a symlink so that switching versions is one atomic rename;
// other tools follow it and see the standard layout. Each run works in a copy
// made of hard links to the current version; the backup engine never writes
// into an existing file (it unlinks and creates a new inode), so older
// versions keep their bytes. A crash leaves at most a work-* directory, which
// Open removes.
package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// ErrLocked reports another run holding the store's lock.
var ErrLocked = errors.New("snapshot: another backup of this device is running")

const (
	metaDir     = ".ibackup"
	versionsDir = "versions"
	workPrefix  = "work-"
	idLayout    = "20060102T150405.000000000Z"
)

// Store manages the versions of one device's backup inside a backup directory.
type Store struct {
	dir, udid string
	base      string
	lock      *os.File
}

// Version is one kept backup.
type Version struct {
	// ID sorts by creation time ("20261124T203800.123456789Z").
	ID string
	// Dir is the directory holding <UDID>/ and the record.
	Dir string
	// Current is true for the version DIR/<UDID> points to.
	Current bool
	// Unmanaged is true for a plain DIR/<UDID> directory made by another tool.
	Unmanaged bool
	// Record is the verification record, nil when there is none.
	Record *Record
}

// Path returns the version's <UDID> folder.
func (v Version) Path(udid string) string { return filepath.Join(v.Dir, udid) }

// Open opens (creating) the store of udid under dir, takes its lock, and
// cleans up what an interrupted run left behind.
func Open(dir, udid string) (*Store, error) {
	if udid == "" || strings.ContainsAny(udid, `/\`) || udid == "." || udid == ".." || strings.HasPrefix(udid, ".") {
		return nil, fmt.Errorf("snapshot: invalid device identifier %q", udid)
	}
	s := &Store{dir: dir, udid: udid, base: filepath.Join(dir, metaDir, udid)}
	if err := os.MkdirAll(filepath.Join(s.base, versionsDir), 0o755); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(s.base, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("snapshot: lock: %w", err)
	}
	s.lock = f
	if err := s.recover(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the lock.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close() // closing drops the flock
	s.lock = nil
	return err
}

// UDID returns the device identifier of the store.
func (s *Store) UDID() string { return s.udid }

// linkPath is DIR/<UDID>.
func (s *Store) linkPath() string { return filepath.Join(s.dir, s.udid) }

// recover removes work directories of interrupted runs and restores the
// DIR/<UDID> link if a crash happened between renames.
func (s *Store) recover() error {
	ents, err := os.ReadDir(s.base)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), workPrefix) {
			if err := os.RemoveAll(filepath.Join(s.base, e.Name())); err != nil {
				return fmt.Errorf("snapshot: removing unfinished run: %w", err)
			}
		}
	}
	_ = os.Remove(s.tmpLinkPath())
	if _, err := os.Lstat(s.linkPath()); errors.Is(err, fs.ErrNotExist) {
		vs, err := s.Versions()
		if err != nil {
			return err
		}
		if len(vs) > 0 {
			return s.pointTo(vs[len(vs)-1].ID)
		}
	}
	return nil
}

func (s *Store) tmpLinkPath() string { return filepath.Join(s.dir, "."+s.udid+".ibackup-link") }

// currentID returns the ID DIR/<UDID> points to, "" when it is absent, and
// unmanaged=true when it is a plain directory.
func (s *Store) currentID() (id string, unmanaged bool, err error) {
	fi, err := os.Lstat(s.linkPath())
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("snapshot: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		if fi.IsDir() {
			return "", true, nil
		}
		return "", false, fmt.Errorf("snapshot: %s is neither a directory nor a symlink", s.linkPath())
	}
	t, err := os.Readlink(s.linkPath())
	if err != nil {
		return "", false, fmt.Errorf("snapshot: %w", err)
	}
	parts := strings.Split(filepath.ToSlash(t), "/")
	if len(parts) >= 2 && parts[len(parts)-1] == s.udid {
		return parts[len(parts)-2], false, nil
	}
	return "", false, fmt.Errorf("snapshot: %s points to unexpected %s", s.linkPath(), t)
}

// Versions lists the versions oldest first, including an unmanaged plain
// DIR/<UDID> directory as the current one.
func (s *Store) Versions() ([]Version, error) {
	cur, unmanaged, err := s.currentID()
	if err != nil {
		return nil, err
	}
	vdir := filepath.Join(s.base, versionsDir)
	ents, err := os.ReadDir(vdir)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	var out []Version
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		v := Version{ID: e.Name(), Dir: filepath.Join(vdir, e.Name()), Current: e.Name() == cur}
		if r, _, err := ReadRecordIn(v.Dir); err == nil {
			v.Record = r
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if unmanaged {
		out = append(out, Version{ID: "unmanaged", Dir: s.dir, Current: true, Unmanaged: true})
	}
	return out, nil
}

// Current returns the current version, or ok=false when there is no backup.
func (s *Store) Current() (Version, bool, error) {
	vs, err := s.Versions()
	if err != nil {
		return Version{}, false, err
	}
	for _, v := range vs {
		if v.Current {
			return v, true, nil
		}
	}
	return Version{}, false, nil
}

// pointTo atomically makes DIR/<UDID> a symlink to version id.
func (s *Store) pointTo(id string) error {
	target := filepath.Join(metaDir, s.udid, versionsDir, id, s.udid)
	tmp := s.tmpLinkPath()
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := os.Rename(tmp, s.linkPath()); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return syncDir(s.dir)
}

// newID returns a fresh version ID later than every existing one.
func (s *Store) newID() string {
	t := time.Now().UTC()
	for {
		id := t.Format(idLayout)
		_, err1 := os.Lstat(filepath.Join(s.base, versionsDir, id))
		_, err2 := os.Lstat(filepath.Join(s.base, workPrefix+id))
		if errors.Is(err1, fs.ErrNotExist) && errors.Is(err2, fs.ErrNotExist) {
			return id
		}
		t = t.Add(time.Microsecond)
	}
}

// Prune removes the oldest versions so that at most keep remain; the
// current version is never removed. It returns the removed IDs.
func (s *Store) Prune(keep int) ([]string, error) {
	if keep < 1 {
		keep = 1
	}
	vs, err := s.Versions()
	if err != nil {
		return nil, err
	}
	var removed []string
	n := len(vs)
	for _, v := range vs {
		if n <= keep {
			break
		}
		if v.Current || v.Unmanaged {
			continue
		}
		if err := os.RemoveAll(v.Dir); err != nil {
			return removed, fmt.Errorf("snapshot: prune %s: %w", v.ID, err)
		}
		removed = append(removed, v.ID)
		n--
	}
	return removed, nil
}

// List returns the versions of udid's backup in dir without taking the lock
// (safe while a backup runs; for `ibackup versions`).
func List(dir, udid string) ([]Version, error) {
	s := &Store{dir: dir, udid: udid, base: filepath.Join(dir, metaDir, udid)}
	if _, err := os.Stat(filepath.Join(s.base, versionsDir)); errors.Is(err, fs.ErrNotExist) {
		// Never backed up by us: maybe a plain directory from another tool.
		if fi, err := os.Lstat(s.linkPath()); err == nil && fi.IsDir() {
			return []Version{{ID: "unmanaged", Dir: dir, Current: true, Unmanaged: true}}, nil
		}
		return nil, nil
	}
	return s.Versions()
}

// Devices returns the device identifiers with managed backups in dir.
func Devices(dir string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(dir, metaDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
