package phone

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/ibackup/ibackup/fakedevice/profile"
)

// CreateOptions control Create.
type CreateOptions struct {
	// Profile is the profile name; "" means profile.DefaultName.
	Profile string
	// Seed makes the identity and the content deterministic.
	Seed int64
	// Files is the number of regular files to generate (0 means DefaultFiles).
	// Ignored with FromTree.
	Files int
	// Size is the approximate total content size in bytes (0 means
	// DefaultSize). Ignored with FromTree.
	Size int64
	// FromTree, when set, copies this tree instead of generating content. If
	// its top-level directories are domain names (…Domain or …Domain-…) it is
	// copied as files/ itself; otherwise it goes under files/HomeDomain/.
	FromTree string
	// DeviceName overrides the default "Test iPhone".
	DeviceName string
}

// Defaults for generated content: a few hundred files, a few MiB, quick to
// create and to back up.
const (
	DefaultFiles       = 300
	DefaultSize  int64 = 8 << 20
)

// Create makes a new phone under dir (dir/<UDID>/) and returns it. It fails
// if a phone with the same UDID already exists there.
func Create(dir string, opts CreateOptions) (*Phone, error) {
	prof, err := profile.Lookup(opts.Profile)
	if err != nil {
		return nil, fmt.Errorf("phone: %w", err)
	}
	id := profile.NewIdentity(prof, opts.Seed)
	if opts.DeviceName != "" {
		id.DeviceName = opts.DeviceName
	}
	p := &Phone{
		Dir: filepath.Join(dir, id.UniqueDeviceID),
		Config: Config{
			Profile:  prof.Name,
			Seed:     opts.Seed,
			Identity: id,
			Created:  time.Now().UTC().Truncate(time.Second),
		},
	}
	if _, err := os.Stat(p.Dir); err == nil {
		return nil, fmt.Errorf("phone: %s already exists (choose another --seed)", p.Dir)
	}
	tmp, err := os.MkdirTemp(dir, ".new-"+id.UniqueDeviceID+"-")
	if err != nil {
		if err2 := os.MkdirAll(dir, 0o755); err2 != nil {
			return nil, fmt.Errorf("phone: %w", err2)
		}
		if tmp, err = os.MkdirTemp(dir, ".new-"+id.UniqueDeviceID+"-"); err != nil {
			return nil, fmt.Errorf("phone: %w", err)
		}
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(tmp)
		}
	}()
	files := filepath.Join(tmp, FilesDir)
	if opts.FromTree != "" {
		err = copyTree(opts.FromTree, files)
	} else {
		err = Generate(files, prof, opts.Seed, opts.Files, opts.Size)
	}
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(tmp, AFCDir, "DCIM"), 0o755); err != nil {
		return nil, fmt.Errorf("phone: %w", err)
	}
	staged := &Phone{Dir: tmp, Config: p.Config}
	if err := staged.Save(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, p.Dir); err != nil {
		return nil, fmt.Errorf("phone: %w", err)
	}
	ok = true
	return p, nil
}

// isDomainName reports whether a top-level directory name looks like a
// backup domain (mobilebackup2-and-backup-format.md §5.6).
func isDomainName(n string) bool {
	for i := 0; i+6 <= len(n); i++ {
		if n[i:i+6] == "Domain" && (i+6 == len(n) || n[i+6] == '-') {
			return true
		}
	}
	return false
}

// copyTree copies src into dst/ (domain layout) or dst/HomeDomain/.
func copyTree(src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("phone: --from-tree: %w", err)
	}
	domains := len(ents) > 0
	for _, e := range ents {
		if !e.IsDir() || !isDomainName(e.Name()) {
			domains = false
		}
	}
	if !domains {
		dst = filepath.Join(dst, "HomeDomain")
	}
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if err := os.WriteFile(target, b, info.Mode().Perm()|0o600); err != nil {
				return err
			}
			return os.Chtimes(target, info.ModTime(), info.ModTime())
		default:
			return nil // sockets, devices: a phone has none
		}
	})
	if err != nil {
		return fmt.Errorf("phone: --from-tree: %w", err)
	}
	return nil
}

// Generate fills root with deterministic content for seed: a realistic set of
// domains (real-device-profile.md, mobilebackup2-and-backup-format.md §5.6)
// with SQLite databases, plists, photos, empty files, a few large files and
// symlinks, about n regular files and about size bytes in total.
func Generate(root string, prof profile.Profile, seed int64, n int, size int64) error {
	if n <= 0 {
		n = DefaultFiles
	}
	if size <= 0 {
		size = DefaultSize
	}
	g := &generator{
		root: root,
		rng:  rand.New(rand.NewPCG(uint64(seed), 0x6970686f6e65)), // "iphone"
		base: time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(seed%1000) * time.Hour),
		prof: prof,
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("phone: %w", err)
	}
	if err := g.run(n, size); err != nil {
		return fmt.Errorf("phone: generate: %w", err)
	}
	return nil
}
