package backupagent

import (
	"crypto/sha1"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
)

// item is one backed-up entry of the phone's content tree.
type item struct {
	rec  backupfmt.Record
	path string // on the fake phone's disk (regular files)
}

// scan reads <ContentDir>/<Domain>/<relativePath> into manifest records with
// MBFile metadata from the file system (format §5.5). Every domain has a
// row for its root directory (relativePath ""). Sorted by fileID.
func scan(dir string, digest bool) ([]item, error) {
	domains, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("backupagent: content: %w", err)
	}
	var out []item
	for _, d := range domains {
		if !d.IsDir() || strings.Contains(d.Name(), "/") {
			continue
		}
		domain := d.Name()
		top := filepath.Join(dir, domain)
		err := filepath.WalkDir(top, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(top, p)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			if rel == "." {
				rel = ""
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			f := mbFile(rel, fi)
			switch {
			case fi.Mode()&fs.ModeSymlink != 0:
				if f.Target, err = os.Readlink(p); err != nil {
					return err
				}
			case fi.Mode().IsRegular():
				if digest {
					if f.Digest, err = sha1File(p); err != nil {
						return err
					}
				}
			case !fi.IsDir():
				return nil // sockets, devices: not backed up
			}
			out = append(out, item{path: p, rec: backupfmt.Record{
				FileID: backupfmt.FileID(domain, rel), Domain: domain, RelativePath: rel,
				Flags: f.Type(), File: f,
			}})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("backupagent: content: %w", err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rec.FileID < out[j].rec.FileID })
	return out, nil
}

// mbFile builds MBFile metadata from an lstat result.
func mbFile(rel string, fi fs.FileInfo) *backupfmt.MBFile {
	f := &backupfmt.MBFile{
		RelativePath:    rel,
		LastModified:    fi.ModTime().Unix(),
		Birth:           fi.ModTime().Unix(),
		Mode:            uint16(fi.Mode().Perm()),
		UserID:          501,
		GroupID:         501,
		ProtectionClass: 3,
	}
	switch {
	case fi.IsDir():
		f.Mode |= backupfmt.ModeDirectory
	case fi.Mode()&fs.ModeSymlink != 0:
		f.Mode |= backupfmt.ModeSymlink
	default:
		f.Mode |= backupfmt.ModeRegular
		f.Size = fi.Size()
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		f.InodeNumber = st.Ino
		f.LastStatusChange = st.Ctim.Sec
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

// changed reports whether a content file differs from the previous
// backup's row (size, mtime, inode, digest where both have one).
func changed(old, cur *backupfmt.MBFile) bool {
	if old == nil || old.Type() != cur.Type() || old.Size != cur.Size ||
		old.LastModified != cur.LastModified || old.InodeNumber != cur.InodeNumber {
		return true
	}
	if len(old.Digest) > 0 && len(cur.Digest) > 0 {
		return string(old.Digest) != string(cur.Digest)
	}
	return false
}

func newSHA1() hash.Hash { return sha1.New() }
