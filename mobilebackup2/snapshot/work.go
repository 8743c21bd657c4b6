package snapshot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Work is one backup run's working copy. The phone sees Root() as the backup
// root; Root()/<UDID> starts as hard links to the current version.
type Work struct {
	s      *Store
	id     string
	root   string
	base   *Version // the version the copy was made from, nil for a first backup
	closed bool
}

// Begin creates a working copy of the current version (hard links; a plain
// unmanaged directory is linked the same way, without being changed).
func (s *Store) Begin() (*Work, error) {
	if s.lock == nil {
		return nil, errors.New("snapshot: store is closed")
	}
	id := s.newID()
	w := &Work{s: s, id: id, root: filepath.Join(s.base, workPrefix+id)}
	if err := os.Mkdir(w.root, 0o755); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	cur, ok, err := s.Current()
	if err != nil {
		w.Abort()
		return nil, err
	}
	if ok {
		w.base = &cur
		if err := linkTree(cur.Path(s.udid), filepath.Join(w.root, s.udid)); err != nil {
			w.Abort()
			return nil, err
		}
	}
	return w, nil
}

// ID returns the version ID this run will get.
func (w *Work) ID() string { return w.id }

// Root returns the directory the phone's paths are relative to.
func (w *Work) Root() string { return w.root }

// Base returns the version the working copy was made from (ok=false for a
// first backup).
func (w *Work) Base() (Version, bool) {
	if w.base == nil {
		return Version{}, false
	}
	return *w.base, true
}

// Abort deletes the working copy; the current version is untouched.
func (w *Work) Abort() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if err := os.RemoveAll(w.root); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// Commit stores rec beside the working copy, turns it into a version and
// makes it current with one atomic rename. A plain DIR/<UDID> directory
// made by another tool is kept as an older version.
func (w *Work) Commit(rec *Record) (Version, error) {
	if w.closed {
		return Version{}, errors.New("snapshot: run already finished")
	}
	s := w.s
	rec.Format, rec.UDID, rec.ID = RecordFormat, s.udid, w.id
	if rec.Created.IsZero() {
		rec.Created = time.Now().UTC()
	}
	if err := writeRecord(filepath.Join(w.root, RecordName), rec); err != nil {
		return Version{}, err
	}
	if err := syncDir(filepath.Join(w.root, s.udid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Version{}, err
	}
	vdir := filepath.Join(s.base, versionsDir)
	dst := filepath.Join(vdir, w.id)
	if err := os.Rename(w.root, dst); err != nil {
		return Version{}, fmt.Errorf("snapshot: %w", err)
	}
	w.closed = true
	if err := syncDir(vdir); err != nil {
		return Version{}, err
	}
	_, unmanaged, err := s.currentID()
	if err != nil {
		return Version{}, err
	}
	if unmanaged {
		if err := s.adoptUnmanaged(); err != nil {
			return Version{}, err
		}
	}
	if err := s.pointTo(w.id); err != nil {
		return Version{}, err
	}
	return Version{ID: w.id, Dir: dst, Current: true, Record: rec}, nil
}

// adoptUnmanaged moves a plain DIR/<UDID> directory into the versions
// directory. If the process dies between this rename and the symlink, Open
// points DIR/<UDID> at the newest version.
func (s *Store) adoptUnmanaged() error {
	fi, err := os.Stat(s.linkPath())
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	id := fi.ModTime().UTC().Format(idLayout)
	dir := filepath.Join(s.base, versionsDir, id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := os.Rename(s.linkPath(), filepath.Join(dir, s.udid)); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// linkTree recreates src at dst with directories copied, regular files hard
// linked and symlinks copied as symlinks.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		target := filepath.Join(dst, rel)
		switch t := d.Type(); {
		case t.IsDir():
			if err := os.Mkdir(target, 0o755); err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
		case t.IsRegular():
			if err := os.Link(p, target); err != nil {
				// File systems without hard links (exFAT, some network
				// shares): fall back to a copy, slower but just as safe.
				if cerr := copyFile(p, target); cerr != nil {
					return fmt.Errorf("snapshot: %w (copy: %w)", err, cerr)
				}
			}
		case t&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
			if err := os.Symlink(l, target); err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
		}
		return nil
	})
}

// copyFile copies a regular file's bytes and mode into a new file.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
