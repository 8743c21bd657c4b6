package snapshot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
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
	if err := w.writeRecord(rec); err != nil {
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
	rec.path, rec.Files = filepath.Join(dst, RecordName), nil
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

// writeRecord stores rec as the working copy's format 2 record: the
// entries a RecordWriter already wrote (or rec.Files, for a small record
// built in memory), then the header, fsync and rename.
func (w *Work) writeRecord(rec *Record) error {
	final := filepath.Join(w.root, RecordName)
	if rec.path == "" {
		rw, err := CreateRecord(PendingRecordPath(w.root))
		if err != nil {
			return err
		}
		if err := rec.Each(rw.Add); err != nil {
			rw.Abort()
			return err
		}
		r, err := rw.Finish(*rec)
		if err != nil {
			return err
		}
		rec.path, rec.Count, rec.Bytes = r.path, r.Count, r.Bytes
	}
	hdr, err := encodeHeader(rec)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(rec.path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if _, err := f.WriteAt(hdr, 0); err != nil {
		f.Close()
		return fmt.Errorf("snapshot: record: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("snapshot: record: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("snapshot: record: %w", err)
	}
	if err := os.Rename(rec.path, final); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	rec.path = final
	return syncDir(w.root)
}

// PendingRecordPath returns where a run's record entries are written while
// it is verified: inside the working directory root (Work.Root), beside
// <UDID>/. Commit turns the file into the version's record.
func PendingRecordPath(workRoot string) string { return filepath.Join(workRoot, RecordName+".part") }

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
// linked and symlinks copied as symlinks. It works on directory file
// descriptors (openat/linkat/mkdirat with single names), so each file costs
// one linkat without resolving its full path again (issue 11: an
// incremental run of a million files).
func linkTree(src, dst string) error {
	if err := os.Mkdir(dst, 0o755); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	sfd, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("snapshot: open %s: %w", src, err)
	}
	dfd, err := unix.Open(dst, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		unix.Close(sfd)
		return fmt.Errorf("snapshot: open %s: %w", dst, err)
	}
	return linkDir(sfd, dfd, src, dst, linkWorkers)
}

// linkWorkers is how many directories linkTree fills at once: linkat is
// kernel time spent per directory, and the content folders (<xx>/) are
// independent.
const linkWorkers = 4

// linkDir links the entries of directory sfd (path src, for messages and
// the copy fallback) into dfd; it closes both. With workers > 1 the
// subdirectories are filled by that many goroutines.
func linkDir(sfd, dfd int, src, dst string, workers int) error {
	defer unix.Close(dfd)
	defer unix.Close(sfd)
	rfd, err := unix.Dup(sfd) // os.File takes ownership of what it is given
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	d := os.NewFile(uintptr(rfd), src)
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	var sub []string
	for _, e := range ents {
		name := e.Name()
		switch t := e.Type(); {
		case t.IsDir():
			if err := unix.Mkdirat(dfd, name, 0o755); err != nil {
				return fmt.Errorf("snapshot: mkdir %s: %w", filepath.Join(dst, name), err)
			}
			sub = append(sub, name)
		case t.IsRegular():
			if err := unix.Linkat(sfd, name, dfd, name, 0); err != nil {
				// File systems without hard links (exFAT, some network
				// shares): fall back to a copy, slower but just as safe.
				if cerr := copyFile(filepath.Join(src, name), filepath.Join(dst, name)); cerr != nil {
					return fmt.Errorf("snapshot: %w (copy: %w)", err, cerr)
				}
			}
		case t&fs.ModeSymlink != 0:
			l, err := os.Readlink(filepath.Join(src, name))
			if err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
			if err := unix.Symlinkat(l, dfd, name); err != nil {
				return fmt.Errorf("snapshot: symlink %s: %w", filepath.Join(dst, name), err)
			}
		}
	}
	return linkSubdirs(sfd, dfd, src, dst, sub, workers)
}

// linkSubdirs fills the already created subdirectories names of dfd from
// sfd, on up to workers goroutines (the first error stops the rest).
func linkSubdirs(sfd, dfd int, src, dst string, names []string, workers int) error {
	one := func(name string) error {
		cs, err := unix.Openat(sfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != nil {
			return fmt.Errorf("snapshot: open %s: %w", filepath.Join(src, name), err)
		}
		cd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != nil {
			unix.Close(cs)
			return fmt.Errorf("snapshot: open %s: %w", filepath.Join(dst, name), err)
		}
		return linkDir(cs, cd, filepath.Join(src, name), filepath.Join(dst, name), 1)
	}
	if workers <= 1 || len(names) < 2 {
		for _, n := range names {
			if err := one(n); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		next int
		ferr error
	)
	for range min(workers, len(names)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if ferr != nil || next == len(names) {
					mu.Unlock()
					return
				}
				n := names[next]
				next++
				mu.Unlock()
				if err := one(n); err != nil {
					mu.Lock()
					if ferr == nil {
						ferr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return ferr
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
