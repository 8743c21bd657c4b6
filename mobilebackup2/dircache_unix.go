//go:build unix

package mobilebackup2

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// dirCache keeps parent directories of content files open, so creating,
// renaming or removing one file costs one *at system call on a single name
// instead of os.Root resolving every component of the path again (issue
// 11: 4 openat and 3 close per created file).
//
// Confinement is os.Root's: a directory is only ever opened through the
// root (component by component, O_NOFOLLOW, symlinks resolved inside the
// root or refused), files are created O_CREAT|O_EXCL|O_NOFOLLOW, and names
// are single components (splitName). The engine flushes the cache whenever
// it removes, moves or copies a directory, so an open directory is always
// the one its path names.
type dirCache struct {
	root    *os.Root
	open    map[string]*os.File
	max     int        // bound of len(open)
	retired []*os.File // evicted during an operation, closed at its end
}

func newDirCache(root *os.Root) *dirCache {
	return &dirCache{root: root, open: map[string]*os.File{}, max: maxOpenDirs}
}

// dirFD returns an open descriptor of the root-relative directory dir. With
// mkdir, a missing directory is created first (§3.3: parents are created
// defensively).
func (c *dirCache) dirFD(dir string, mkdir bool) (int, error) {
	if f, ok := c.open[dir]; ok {
		return int(f.Fd()), nil
	}
	f, err := c.root.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if mkdir && errors.Is(err, fs.ErrNotExist) {
		if err = mkdirAll(c.root, dir); err == nil {
			f, err = c.root.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
		}
	}
	if err != nil {
		return -1, err
	}
	if len(c.open) >= c.max {
		for k, old := range c.open {
			delete(c.open, k)
			c.retired = append(c.retired, old)
			break
		}
	}
	c.open[dir] = f
	return int(f.Fd()), nil
}

// done closes directories evicted during the operation that just ended.
func (c *dirCache) done() {
	for _, f := range c.retired {
		f.Close()
	}
	clear(c.retired)
	c.retired = c.retired[:0]
}

// flush closes every cached directory (after a directory was removed,
// moved or replaced).
func (c *dirCache) flush() {
	for k, f := range c.open {
		f.Close()
		delete(c.open, k)
	}
	c.done()
}

// create creates p as a new inode for writing (createFresh): O_EXCL first;
// an existing entry — possibly a hard link into an older version, which
// must never be written into — is unlinked and the create retried once.
func (c *dirCache) create(p string) (*os.File, error) {
	defer c.done()
	dir, name, err := splitName(p)
	if err != nil {
		return nil, err
	}
	fd, err := c.dirFD(dir, true)
	if err != nil {
		return nil, err
	}
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	for retried := false; ; retried = true {
		nfd, err := openat(fd, name, flags, 0o644)
		if err == nil {
			return os.NewFile(uintptr(nfd), p), nil
		}
		if err != unix.EEXIST || retried {
			return nil, &fs.PathError{Op: "openat", Path: p, Err: err}
		}
		if err := c.unlinkAny(fd, name, p); err != nil {
			return nil, &fs.PathError{Op: "unlinkat", Path: p, Err: err}
		}
	}
}

// unlinkAny removes the entry name of the open directory fd, root-relative
// path p: a non-directory or an empty directory (what os.Root.Remove
// does). An empty directory has nothing below it, so only its own cache
// entry goes (closed when the operation ends: fd stays valid).
func (c *dirCache) unlinkAny(fd int, name, p string) error {
	err := unlinkat(fd, name, 0)
	if err == nil || (err != unix.EISDIR && err != unix.EPERM) {
		return err
	}
	if derr := unlinkat(fd, name, unix.AT_REMOVEDIR); derr != nil {
		return err
	}
	if f, ok := c.open[p]; ok {
		delete(c.open, p)
		c.retired = append(c.retired, f)
	}
	return nil
}

// rename renames the file sp to dp, replacing a non-directory at dp and
// creating dp's parent when missing. It is only used for files received in
// this run; anything else (or any failure) takes os.Root's general path.
func (c *dirCache) rename(sp, dp string) error {
	defer c.done()
	sdir, sname, err := splitName(sp)
	if err != nil {
		return err
	}
	ddir, dname, err := splitName(dp)
	if err != nil {
		return err
	}
	sfd, err := c.dirFD(sdir, false)
	if err != nil {
		return err
	}
	dfd, err := c.dirFD(ddir, true)
	if err != nil {
		return err
	}
	for {
		err = unix.Renameat(sfd, sname, dfd, dname)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return &os.LinkError{Op: "renameat", Old: sp, New: dp, Err: err}
	}
	return nil
}

// unlink removes the non-directory p. A directory is refused (EISDIR or
// EPERM), so the caller takes the general path that forgets what was below.
func (c *dirCache) unlink(p string) error {
	defer c.done()
	dir, name, err := splitName(p)
	if err != nil {
		return err
	}
	fd, err := c.dirFD(dir, false)
	if err != nil {
		return err
	}
	if err := unlinkat(fd, name, 0); err != nil {
		return &fs.PathError{Op: "unlinkat", Path: p, Err: err}
	}
	return nil
}

func openat(dirfd int, name string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func unlinkat(dirfd int, name string, flags int) error {
	for {
		err := unix.Unlinkat(dirfd, name, flags)
		if err != unix.EINTR {
			return err
		}
	}
}

// maxOpenDirs bounds the directories a dirCache keeps open. A backup
// writes into <UDID>/<xx> and <UDID>/Snapshot/<xx> (2×256 directories,
// mobilebackup2-and-backup-format.md §4.3 steps 5–6), so this holds all of
// them with room to spare, far below the process's file limit.
const maxOpenDirs = 1024

// splitName splits a cleaned root-relative path (cleanPath) into its parent
// directory ("." for the root) and its last component, which must be one
// plain name: the *at system calls of the dirCache take it as is.
func splitName(p string) (dir, name string, err error) {
	dir, name = path.Split(p)
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, 0) {
		return "", "", fmt.Errorf("%w: %q", ErrUnsafePath, p)
	}
	if dir == "" {
		return ".", name, nil
	}
	return strings.TrimSuffix(dir, "/"), name, nil
}
