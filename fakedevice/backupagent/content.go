package backupagent

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
)

// item is one backed-up entry of the phone's content tree.
type item struct {
	rec  backupfmt.Record
	path string   // on the fake phone's disk (regular files)
	st   statID   // lstat identity when scanned
	prev *prevRow // its row in the previous manifest, if any
}

// statID is what a file's lstat says about its identity and content, to
// nanoseconds: equal values mean the file was not touched (as far as a
// phone's own backup cache can tell without reading it).
type statID struct {
	size         int64
	mtime, ctime int64 // Unix nanoseconds
	ino          uint64
	mode         uint32
}

// scan reads <ContentDir>/<Domain>/<relativePath> into manifest records with
// MBFile metadata from the file system (format §5.5). Every domain has a
// row for its root directory (relativePath ""). Sorted by fileID. Digests
// are left empty: the caller takes them from its cache or computes them
// (while uploading, for files it sends). Entries are stat'ed relative to
// their open directory (fstatat), which spares the kernel a path walk per
// file; entries that vanish during the scan are skipped.
func scan(dir string) ([]item, error) {
	domains, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("backupagent: content: %w", err)
	}
	// Domains are walked in parallel (a phone has cores too; the host
	// waits meanwhile), each by its own walker.
	var (
		wg    sync.WaitGroup
		sem   = make(chan struct{}, runtime.GOMAXPROCS(0))
		walks []*walker
		errs  = make([]error, len(domains))
	)
	for i, d := range domains {
		if !d.IsDir() || strings.Contains(d.Name(), "/") {
			continue
		}
		w := &walker{domain: d.Name()}
		walks = append(walks, w)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = w.root(filepath.Join(dir, d.Name()))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("backupagent: content: %w", err)
	}
	n := 0
	for _, w := range walks {
		n += len(w.out)
	}
	out := make([]item, 0, n)
	for _, w := range walks {
		out = append(out, w.out...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rec.FileID < out[j].rec.FileID })
	return out, nil
}

// walker collects the items of one domain.
type walker struct {
	domain string
	out    []item
}

// root adds the domain's root directory and everything below it.
func (w *walker) root(top string) error {
	f, err := os.Open(top)
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return &fs.PathError{Op: "fstat", Path: top, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	w.add(top, "", &st, "")
	return w.dir(f, top, "")
}

// dir adds the entries of the open directory f (path p, relative path rel).
func (w *walker) dir(f *os.File, p, rel string) error {
	ents, err := f.ReadDir(-1)
	if err != nil {
		return err
	}
	fd := int(f.Fd())
	for _, e := range ents {
		name := e.Name()
		cp, crel := p+"/"+name, name
		if rel != "" {
			crel = rel + "/" + name
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed since the listing
			}
			return &fs.PathError{Op: "lstat", Path: cp, Err: err}
		}
		var target string
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
		case unix.S_IFLNK:
			buf := make([]byte, 4096)
			n, err := unix.Readlinkat(fd, name, buf)
			if err != nil {
				return &fs.PathError{Op: "readlink", Path: cp, Err: err}
			}
			target = string(buf[:n])
		case unix.S_IFDIR:
		default:
			continue // sockets, devices: not backed up
		}
		w.add(cp, crel, &st, target)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		sfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return &fs.PathError{Op: "open", Path: cp, Err: err}
		}
		sub := os.NewFile(uintptr(sfd), cp)
		err = w.dir(sub, cp, crel)
		sub.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// add appends the item for one entry.
func (w *walker) add(p, rel string, st *unix.Stat_t, target string) {
	f := mbFile(rel, st)
	f.Target = target
	w.out = append(w.out, item{path: p, rec: backupfmt.Record{
		FileID: backupfmt.FileID(w.domain, rel), Domain: w.domain, RelativePath: rel,
		Flags: f.Type(), File: f,
	}, st: statID{size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(), ino: st.Ino, mode: uint32(st.Mode)}})
}

// mbFile builds MBFile metadata from an lstat result.
func mbFile(rel string, st *unix.Stat_t) *backupfmt.MBFile {
	f := &backupfmt.MBFile{
		RelativePath:     rel,
		LastModified:     st.Mtim.Sec,
		Birth:            st.Mtim.Sec,
		LastStatusChange: st.Ctim.Sec,
		Mode:             uint16(st.Mode & 0o777),
		UserID:           501,
		GroupID:          501,
		InodeNumber:      st.Ino,
		ProtectionClass:  3,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		f.Mode |= backupfmt.ModeDirectory
	case unix.S_IFLNK:
		f.Mode |= backupfmt.ModeSymlink
	default:
		f.Mode |= backupfmt.ModeRegular
		f.Size = st.Size
	}
	return f
}

func sha1File(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha1.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

func newSHA1() hash.Hash { return sha1.New() }
