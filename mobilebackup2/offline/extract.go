package offline

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
)

// ExtractOptions configure Extract.
type ExtractOptions struct {
	Options
	// Domain restricts extraction to one domain; "" = all.
	Domain string
	// PathGlob selects relative paths (path.Match syntax, '*' does not
	// cross '/'); a match on a directory selects everything below it.
	// "" = all.
	PathGlob string
}

// Skipped is an item Extract did not write, with the reason.
type Skipped struct {
	Domain string `json:"domain"`
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// ExtractReport is the result of Extract.
type ExtractReport struct {
	Out      string    `json:"out"`
	Files    int64     `json:"files"`
	Dirs     int64     `json:"dirs"`
	Symlinks int64     `json:"symlinks"`
	Bytes    int64     `json:"bytes"`
	Skipped  []Skipped `json:"skipped"`
	// SizeMismatch lists files whose content length differs from the
	// recorded size; the content was written whole (format §6.4).
	SizeMismatch []Skipped `json:"sizeMismatch"`
}

// Extract writes the selected items of a backup to out as a
// Domain/relativePath tree with modification times kept (ibackup extract).
// The password is checked before anything is written. Nothing is ever
// written outside out: names are validated and all writes go through an
// os.Root, so symlinks in the tree cannot redirect them; symlinks whose
// target leaves out are skipped.
func Extract(dir, out string, opts ExtractOptions) (*ExtractReport, error) {
	if opts.PathGlob != "" {
		if _, err := path.Match(opts.PathGlob, ""); err != nil {
			return nil, fmt.Errorf("offline: bad --path glob %q: %w", opts.PathGlob, err)
		}
	}
	b, err := Open(dir, opts.Options)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("offline: %w", err)
	}
	root, err := os.OpenRoot(out)
	if err != nil {
		return nil, fmt.Errorf("offline: %w", err)
	}
	defer root.Close()
	rep := &ExtractReport{Out: out, Skipped: []Skipped{}, SizeMismatch: []Skipped{}}
	x := &extractor{b: b, root: root, rep: rep, glob: opts.PathGlob}
	if err := b.EachDomain(opts.Domain, x.one); err != nil {
		return rep, err
	}
	// Directory times last: writing their children changed them. A second
	// streaming pass keeps memory bounded.
	err = b.EachDomain(opts.Domain, func(rec backupfmt.Record) error {
		if rec.Type() != backupfmt.FlagDirectory || rec.File == nil || !x.selected(rec) {
			return nil
		}
		name, err := itemName(rec)
		if err != nil {
			return nil
		}
		mt := time.Unix(rec.File.LastModified, 0)
		_ = root.Chtimes(name, mt, mt) // best effort: the directory may have been skipped
		return nil
	})
	return rep, err
}

type extractor struct {
	b    *Backup
	root *os.Root
	rep  *ExtractReport
	glob string
	buf  []byte
}

// selected applies the path glob to the record and its ancestors.
func (x *extractor) selected(rec backupfmt.Record) bool {
	if x.glob == "" {
		return true
	}
	p := rec.RelativePath
	for {
		if ok, _ := path.Match(x.glob, p); ok {
			return true
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return false
		}
		p = p[:i]
	}
}

// itemName validates the output name Domain/relativePath.
func itemName(rec backupfmt.Record) (string, error) {
	if err := checkDomain(rec.Domain); err != nil {
		return "", err
	}
	name := rec.Domain
	if rec.RelativePath != "" {
		name += "/" + rec.RelativePath
	}
	if strings.ContainsRune(name, 0) || strings.Contains(name, "\\") || !filepath.IsLocal(name) ||
		path.Clean(name) != name {
		return "", fmt.Errorf("unsafe path %q", name)
	}
	return name, nil
}

func (x *extractor) skip(rec backupfmt.Record, reason string) {
	x.rep.Skipped = append(x.rep.Skipped, Skipped{Domain: rec.Domain, Path: rec.RelativePath, Reason: reason})
}

// perm returns the permission bits to create an item with; the owner can
// always write so extraction can continue below directories.
func perm(f *backupfmt.MBFile, min fs.FileMode) fs.FileMode {
	if f == nil {
		return min
	}
	return fs.FileMode(f.Mode)&0o777 | min
}

// one extracts one record.
func (x *extractor) one(rec backupfmt.Record) error {
	if !x.selected(rec) {
		return nil
	}
	name, err := itemName(rec)
	if err != nil {
		x.skip(rec, err.Error())
		return nil
	}
	if rec.File == nil {
		x.skip(rec, "metadata does not decode: "+fmt.Sprint(rec.FileErr))
		return nil
	}
	switch rec.Type() {
	case backupfmt.FlagDirectory:
		if err := x.root.MkdirAll(name, perm(rec.File, 0o700)); err != nil {
			x.skip(rec, err.Error())
			return nil
		}
		x.rep.Dirs++
	case backupfmt.FlagSymlink:
		x.symlink(rec, name)
	case backupfmt.FlagFile:
		x.file(rec, name)
	default:
		x.skip(rec, "unknown item type")
	}
	return nil
}

func (x *extractor) symlink(rec backupfmt.Record, name string) {
	t := rec.File.Target
	resolved := path.Join(path.Dir(name), t)
	if t == "" || path.IsAbs(t) || !filepath.IsLocal(resolved) || !strings.HasPrefix(resolved, rec.Domain+"/") {
		x.skip(rec, fmt.Sprintf("symlink target %q leaves the extracted domain", t))
		return
	}
	if err := x.root.MkdirAll(path.Dir(name), 0o755); err != nil {
		x.skip(rec, err.Error())
		return
	}
	_ = x.root.Remove(name)
	if err := x.root.Symlink(t, name); err != nil {
		x.skip(rec, err.Error())
		return
	}
	x.rep.Symlinks++
}

func (x *extractor) file(rec backupfmt.Record, name string) {
	if err := x.root.MkdirAll(path.Dir(name), 0o755); err != nil {
		x.skip(rec, err.Error())
		return
	}
	in, err := x.b.OpenContent(rec)
	if err != nil {
		x.skip(rec, err.Error())
		return
	}
	defer in.Close()
	// Remove first so an existing symlink at name is replaced, not followed.
	if err := x.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		x.skip(rec, err.Error())
		return
	}
	out, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm(rec.File, 0o600))
	if err != nil {
		x.skip(rec, err.Error())
		return
	}
	if x.buf == nil {
		x.buf = make([]byte, 256<<10)
	}
	n, err := io.CopyBuffer(out, in, x.buf)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = x.root.Remove(name) // never leave a partial or undecryptable file
		x.skip(rec, err.Error())
		return
	}
	mt := time.Unix(rec.File.LastModified, 0)
	_ = x.root.Chtimes(name, mt, mt)
	x.rep.Files++
	x.rep.Bytes += n
	if n != rec.File.Size {
		x.rep.SizeMismatch = append(x.rep.SizeMismatch, Skipped{Domain: rec.Domain, Path: rec.RelativePath,
			Reason: fmt.Sprintf("recorded size %d, content %d bytes (kept whole)", rec.File.Size, n)})
	}
}
