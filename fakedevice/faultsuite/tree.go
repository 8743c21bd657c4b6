package faultsuite

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Tree is a fingerprint of a directory tree: slash path relative to the
// root → kind and content digest ("f:<sha256>", "l:<target>", "d").
type Tree map[string]string

// Fingerprint walks root (following root itself if it is a symlink, as
// DIR/<UDID> of a backup is) and fingerprints every entry below it.
func Fingerprint(root string) (Tree, error) {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("faultsuite: %w", err)
	}
	t := Tree{}
	err = filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(real, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			t[rel] = "d"
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			t[rel] = "l:" + target
		case d.Type().IsRegular():
			sum, err := fileDigest(p)
			if err != nil {
				return err
			}
			t[rel] = "f:" + sum
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("faultsuite: fingerprint %s: %w", root, err)
	}
	return t, nil
}

func fileDigest(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// Diff describes how got differs from want, listing at most a few paths;
// "" means equal. Entries of got that are absent from want are tolerated
// when allowed holds them unchanged (content the target phone had before a
// restore and the backup does not mention).
func Diff(want, got, allowed Tree) string {
	var missing, changed, extra []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			missing = append(missing, p)
		case g != w:
			changed = append(changed, p)
		}
	}
	for p, g := range got {
		if _, ok := want[p]; ok {
			continue
		}
		if a, ok := allowed[p]; ok && a == g {
			continue
		}
		extra = append(extra, p)
	}
	if len(missing)+len(changed)+len(extra) == 0 {
		return ""
	}
	var parts []string
	add := func(what string, ps []string) {
		if len(ps) == 0 {
			return
		}
		sort.Strings(ps)
		more := ""
		if len(ps) > 3 {
			more = fmt.Sprintf(" and %d more", len(ps)-3)
			ps = ps[:3]
		}
		parts = append(parts, fmt.Sprintf("%d %s (%s%s)", len(ps)+countMore(more), what, strings.Join(ps, ", "), more))
	}
	add("missing", missing)
	add("different", changed)
	add("unexpected", extra)
	return strings.Join(parts, "; ")
}

// countMore recovers the number hidden in a " and N more" suffix.
func countMore(more string) int {
	var n int
	if more != "" {
		_, _ = fmt.Sscanf(more, " and %d more", &n)
	}
	return n
}

// Equal reports whether two fingerprints are identical.
func (t Tree) Equal(o Tree) bool { return Diff(t, o, nil) == "" }
