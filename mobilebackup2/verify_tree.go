package mobilebackup2

// The checksum record of a run (issue 7 item 4, issue 11): every regular
// file under <UDID>/ with its size, SHA-1 and inode number, written as a
// stream in the order the tree is walked (snapshot.ComparePaths) and merged
// with the base version's record, so memory does not grow with the number
// of files.

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ibackup/ibackup/mobilebackup2/snapshot"
)

// sumTree writes the checksum of every regular file under <UDID>/ to the
// run's pending record and returns it: from this run's streaming hash, from
// the base version's record when the file is still the base version's
// inode (hard-linked by snapshot.Begin, never written into), else by
// reading it. Each entry is also handed to m (when not nil), which checks
// the Manifest.db rows against it.
func (v *verifier) sumTree(hdr snapshot.Record, m *manifestCheck) (*snapshot.Record, error) {
	top := filepath.Join(v.rootDir, v.udid)
	if st, err := os.Lstat(top); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			hdr.Dev = uint64(sys.Dev)
		}
	}
	var (
		base     *snapshot.Cursor
		baseRoot string
		baseDev  uint64
	)
	if v.base != nil && v.base.Record != nil {
		// An unreadable base record only costs speed: every file is hashed.
		if c, err := v.base.Record.NewCursor(); err == nil {
			defer c.Close()
			base, baseRoot, baseDev = c, v.base.Path(v.udid), v.base.Record.Dev
		}
	}
	w, err := snapshot.CreateRecord(snapshot.PendingRecordPath(v.rootDir))
	if err != nil {
		return nil, fmt.Errorf("mobilebackup2: verify: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			w.Abort()
		}
	}()
	add := func(e snapshot.Entry) error {
		if m != nil {
			m.visit(e)
		}
		return w.Add(e)
	}
	buf := make([]byte, 256<<10)
	err = walkFiles(top, func(dirfd int, rel, name string, st *unix.Stat_t) error {
		e := snapshot.Entry{Path: rel, Ino: uint64(st.Ino), MtimeNs: st.Mtim.Nano()}
		if r, ok := v.received.get(v.udid + "/" + rel); ok && r.hashed {
			if st.Size != r.size { // a short write or a later change (checkReceived)
				v.sizeProblems = append(v.sizeProblems, FileProblem{Path: v.udid + "/" + rel,
					Problem: fmt.Sprintf("size on disk %d, received %d bytes", st.Size, r.size)})
			}
			e.Size, e.SHA1 = r.size, r.sum
			return add(e)
		}
		if base != nil {
			be, found, err := base.Lookup(rel)
			if err != nil {
				// A damaged base record only costs speed: hash the rest.
				base = nil
			}
			if err == nil && found && be.Size == st.Size && sameAsBase(be, st, baseDev, baseRoot) {
				e.Size, e.SHA1 = be.Size, be.SHA1
				return add(e)
			}
		}
		var err error
		if e.SHA1, e.Size, err = hashAt(dirfd, name, buf); err != nil {
			return fmt.Errorf("mobilebackup2: verify: %s: %w", rel, err)
		}
		v.ev.CurrentFile = v.udid + "/" + rel
		if v.progress != nil {
			v.progress(v.ev)
		}
		return add(e)
	})
	if err != nil {
		return nil, err
	}
	rec, err := w.Finish(hdr)
	if err != nil {
		return nil, fmt.Errorf("mobilebackup2: verify: %w", err)
	}
	ok = true
	return rec, nil
}

// sameAsBase reports whether the working copy's file (stat st) is the
// base version's file the entry be was recorded for: by the recorded inode
// number when the record has one, else (a format 1 record) by comparing
// with the base version's copy.
func sameAsBase(be snapshot.Entry, st *unix.Stat_t, baseDev uint64, baseRoot string) bool {
	if be.Ino != 0 && baseDev != 0 {
		return be.Ino == uint64(st.Ino) && baseDev == uint64(st.Dev) && be.MtimeNs == st.Mtim.Nano()
	}
	var bst unix.Stat_t
	err := unix.Lstat(filepath.Join(baseRoot, filepath.FromSlash(be.Path)), &bst)
	return err == nil && bst.Ino == st.Ino && bst.Dev == st.Dev
}

// hashAt returns the SHA-1 and size of the bytes of file name in dirfd.
func hashAt(dirfd int, name string, buf []byte) ([sha1.Size]byte, int64, error) {
	var sum [sha1.Size]byte
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return sum, 0, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	h := sha1.New()
	n, err := io.CopyBuffer(h, onlyReader{f}, buf)
	if err != nil {
		return sum, 0, err
	}
	h.Sum(sum[:0])
	return sum, n, nil
}

// onlyReader hides WriterTo so io.CopyBuffer uses the buffer.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// walkFiles calls fn for every regular file under top in ComparePaths
// order (names sorted per directory, depth first) with its directory's
// descriptor, slash path relative to top, name and lstat. It works on
// directory descriptors: one fstatat per file, no full path resolved again
// (issue 11). Symlinks are not followed.
func walkFiles(top string, fn func(dirfd int, rel, name string, st *unix.Stat_t) error) error {
	fd, err := unix.Open(top, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("mobilebackup2: verify: open %s: %w", top, err)
	}
	return walkDirFD(fd, top, "", fn)
}

// walkDirFD walks directory fd (path p for messages, rel its slash path
// relative to the top, "" for the top) and closes fd.
func walkDirFD(fd int, p, rel string, fn func(dirfd int, rel, name string, st *unix.Stat_t) error) error {
	defer unix.Close(fd)
	rfd, err := unix.Dup(fd) // os.File owns what it is given
	if err != nil {
		return fmt.Errorf("mobilebackup2: verify: %w", err)
	}
	d := os.NewFile(uintptr(rfd), p)
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("mobilebackup2: verify: %w", err)
	}
	slices.Sort(names)
	var st unix.Stat_t
	for _, name := range names {
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed while walking
			}
			return fmt.Errorf("mobilebackup2: verify: %s: %w", filepath.Join(p, name), err)
		}
		crel := name
		if rel != "" {
			crel = rel + "/" + name
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			if err := fn(fd, crel, name, &st); err != nil {
				return err
			}
		case unix.S_IFDIR:
			cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("mobilebackup2: verify: open %s: %w", filepath.Join(p, name), err)
			}
			if err := walkDirFD(cfd, filepath.Join(p, name), crel, fn); err != nil {
				return err
			}
		}
	}
	return nil
}
