package mobilebackup2

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// ErrUnsafePath reports a path from the phone that would leave the backup
// root (absolute, "..", NUL) — mobilebackup2-and-backup-format.md §2.3.
var ErrUnsafePath = errors.New("mobilebackup2: unsafe path from the phone")

// cleanPath validates a phone-supplied path relative to the backup root and
// returns it in slash form. os.Root additionally refuses symlink escapes.
func cleanPath(p string) (string, error) {
	if p == "" || strings.ContainsRune(p, 0) || strings.HasPrefix(p, "/") || strings.Contains(p, `\`) {
		return "", fmt.Errorf("%w: %q", ErrUnsafePath, p)
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: %q", ErrUnsafePath, p)
		}
	}
	c := path.Clean(p)
	if c == "." {
		return "", fmt.Errorf("%w: %q", ErrUnsafePath, p)
	}
	return c, nil
}

// errnoCode maps a local error to a DeviceLink status code (§2.4 as
// corrected by corrections.md B4: the table of current idevicebackup2,
// unknown errno → −1).
func errnoCode(err error) int64 {
	var en syscall.Errno
	switch {
	case errors.Is(err, ErrUnsafePath):
		return -1
	case errors.Is(err, fs.ErrNotExist):
		return -6
	case errors.Is(err, fs.ErrExist):
		return -7
	case errors.Is(err, errDiskFull):
		return -15
	case errors.As(err, &en):
		switch en {
		case syscall.ENOTDIR:
			return -8
		case syscall.EISDIR:
			return -9
		case syscall.ELOOP:
			return -10
		case syscall.EIO:
			return -11
		case syscall.ENOSPC:
			return -15
		}
	}
	return -1
}

// errText is the strerror-like text sent to the phone.
func errText(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		return en.Error()
	}
	if errors.Is(err, fs.ErrNotExist) {
		return "No such file or directory"
	}
	if errors.Is(err, errDiskFull) {
		return "No space left on device"
	}
	return err.Error()
}

// errDiskFull is the local form of ENOSPC, also produced by the space limit.
var errDiskFull = fmt.Errorf("%w (ENOSPC)", ErrDiskFull)

// isDiskFull reports ENOSPC from the OS or the space limit.
func isDiskFull(err error) bool {
	return errors.Is(err, errDiskFull) || errors.Is(err, syscall.ENOSPC)
}

// quota counts bytes written and enforces an optional limit.
type quota struct {
	limit, used int64
}

func (q *quota) take(n int) error {
	if q.limit > 0 && q.used+int64(n) > q.limit {
		return errDiskFull
	}
	q.used += int64(n)
	return nil
}

// quotaWriter writes to w after charging q.
type quotaWriter struct {
	w io.Writer
	q *quota
}

func (qw quotaWriter) Write(p []byte) (int, error) {
	if err := qw.q.take(len(p)); err != nil {
		return 0, err
	}
	return qw.w.Write(p)
}

// createFresh creates name as a new inode: O_EXCL first; an existing file
// (possibly a hard link into an older backup version) is unlinked and the
// create retried, so older versions never change (snapshot package doc).
func createFresh(root *os.Root, name string) (*os.File, error) {
	const flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL
	f, err := root.OpenFile(name, flags, 0o644)
	if errors.Is(err, fs.ErrExist) {
		if err := root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		f, err = root.OpenFile(name, flags, 0o644)
	}
	if errors.Is(err, fs.ErrNotExist) {
		// Create parent directories defensively (§3.3), then retry.
		if dir := path.Dir(name); dir != "." {
			if err := mkdirAll(root, dir); err != nil {
				return nil, err
			}
		}
		f, err = root.OpenFile(name, flags, 0o644)
	}
	return f, err
}

// mkdirAll is root.MkdirAll with a fast path for an existing directory
// (the phone creates its 2×257 directories on every backup, §4.3).
func mkdirAll(root *os.Root, name string) error {
	err := root.Mkdir(name, 0o755)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrExist):
		if fi, serr := root.Stat(name); serr == nil && fi.IsDir() {
			return nil
		}
		return err
	}
	return root.MkdirAll(name, 0o755)
}

// moveItem implements one MoveItems pair: remove an existing destination
// (recursively), create the parent, rename (§2.3).
func moveItem(root *os.Root, src, dst string) error {
	if _, err := root.Lstat(src); err != nil {
		return err
	}
	if src == dst {
		return nil
	}
	if err := root.RemoveAll(dst); err != nil {
		return err
	}
	if dir := path.Dir(dst); dir != "." {
		if err := mkdirAll(root, dir); err != nil {
			return err
		}
	}
	return root.Rename(src, dst)
}

// copyItem copies a file or a directory tree recursively (§2.3, pitfall 19),
// always into new inodes.
func copyItem(root *os.Root, src, dst string, q *quota) error {
	// The top level follows a symlink (DIR/<UDID> is one, snapshot package),
	// so a copy never aliases the original; symlinks below are copied as links.
	if dst == src || strings.HasPrefix(dst, src+"/") {
		return fmt.Errorf("mobilebackup2: cannot copy %s into itself", src)
	}
	fi, err := root.Stat(src)
	if err != nil {
		return err
	}
	return copyEntry(root, src, dst, fi, q)
}

func copyEntry(root *os.Root, src, dst string, fi fs.FileInfo, q *quota) error {
	if err := root.RemoveAll(dst); err != nil {
		return err
	}
	switch {
	case fi.IsDir():
		if err := mkdirAll(root, dst); err != nil {
			return err
		}
		d, err := root.Open(src)
		if err != nil {
			return err
		}
		names, err := d.Readdirnames(-1)
		d.Close()
		if err != nil {
			return err
		}
		sort.Strings(names)
		for _, n := range names {
			cfi, err := root.Lstat(path.Join(src, n))
			if err != nil {
				return err
			}
			if err := copyEntry(root, path.Join(src, n), path.Join(dst, n), cfi, q); err != nil {
				return err
			}
		}
		return nil
	case fi.Mode().IsRegular():
		in, err := root.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := createFresh(root, dst)
		if err != nil {
			return err
		}
		if _, err := io.Copy(quotaWriter{out, q}, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	case fi.Mode()&fs.ModeSymlink != 0:
		l, err := root.Readlink(src)
		if err != nil {
			return err
		}
		return root.Symlink(l, dst)
	}
	return fmt.Errorf("mobilebackup2: cannot copy %s: not a file or directory", src)
}

// freeSpace returns the bytes available to us on the file system holding dir
// (statfs f_bavail × f_bsize, §2.3).
func freeSpace(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("mobilebackup2: statfs %s: %w", dir, err)
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}

// toSlash turns a native relative path into slash form.
func toSlash(p string) string { return filepath.ToSlash(p) }
