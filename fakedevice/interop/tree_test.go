package interop

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// entry is what a restore must reproduce of one item of a content tree:
// its kind, size and content hash (regular files) or target (symlinks).
// Directories, permissions, owners and times are not compared: a restore
// recreates directories on demand, and the fake phone's disk cannot keep
// the device's owners; the size and hash are what a user would miss.
type entry struct {
	Kind byte   // 'f' regular file, 'l' symlink
	Size int64  // file size (0 for symlinks)
	Sum  string // hex sha256 of the content, or the link target
}

func (e entry) String() string {
	if e.Kind == 'l' {
		return "symlink -> " + e.Sum
	}
	return fmt.Sprintf("%d bytes sha256 %.12s", e.Size, e.Sum)
}

// tree maps slash paths "<Domain>/<relativePath>" to entries.
type tree map[string]entry

// readTree snapshots a content tree (a phone's files/ directory, or the
// OUT directory of `ibackup extract`). A missing root is an empty tree.
func readTree(t *testing.T, root string) tree {
	t.Helper()
	out := tree{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root && os.IsNotExist(err) {
				return filepath.SkipAll
			}
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = entry{Kind: 'l', Sum: target}
		case d.Type().IsRegular():
			e, err := hashFile(p)
			if err != nil {
				return err
			}
			out[rel] = e
		}
		return nil
	})
	require.NoError(t, err, "reading tree %s", root)
	return out
}

func hashFile(p string) (entry, error) {
	f, err := os.Open(p)
	if err != nil {
		return entry{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return entry{}, err
	}
	return entry{Kind: 'f', Size: n, Sum: hex.EncodeToString(h.Sum(nil))}, nil
}

// clone returns a copy of the tree.
func (tr tree) clone() tree {
	out := make(tree, len(tr))
	for k, v := range tr {
		out[k] = v
	}
	return out
}

// domain is the first path element ("HomeDomain/Library/x" → "HomeDomain").
func domain(p string) string {
	d, _, _ := strings.Cut(p, "/")
	return d
}

// diff lists, sorted, how got differs from want (empty when equal).
func diff(want, got tree) []string {
	var out []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			out = append(out, "missing   "+p+" ("+w.String()+")")
		case g != w:
			out = append(out, "different "+p+": want "+w.String()+", got "+g.String())
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			out = append(out, "extra     "+p+" ("+g.String()+")")
		}
	}
	sort.Strings(out)
	return out
}

// assertTree checks that got equals want and prints the differences
// (at most 40 lines) when it does not.
func assertTree(t *testing.T, want, got tree, what string) bool {
	t.Helper()
	d := diff(want, got)
	if len(d) == 0 {
		return true
	}
	if len(d) > 40 {
		d = append(d[:40], fmt.Sprintf("... and %d more", len(d)-40))
	}
	return assert.Fail(t, what+": trees differ", strings.Join(d, "\n"))
}

// systemDomains are the domains a device restores only with
// RestoreSystemFiles (idevicebackup2 --system). The facts name the option
// (mobilebackup2-and-backup-format.md §2.2.1) but not the domains; this is
// the fake backup agent's list (fakedevice/backupagent/restore.go).
var systemDomains = map[string]bool{
	"RootDomain": true, "SystemPreferencesDomain": true, "KeychainDomain": true, "WirelessDomain": true,
	"ManagedPreferencesDomain": true, "DatabaseDomain": true, "NetworkDomain": true, "InstallDomain": true,
}

// restoreOpts are the restore options that decide the resulting tree.
type restoreOpts struct {
	system bool // RestoreSystemFiles
	remove bool // RemoveItemsNotRestored
}

// removeWhenAbsent is what the device does when a Restore request has no
// RemoveItemsNotRestored key, as idevicebackup2 1.3.0 sends it only with
// --remove (corrections.md V8). The facts give only iTunes' default, YES
// (mobilebackup2-and-backup-format.md §2.2.1 "AMS default YES"), and the
// fake device follows it, so for 1.3.0 a plain restore removes too.
const removeWhenAbsent = true

// idevicebackup2Opts maps idevicebackup2's --system and --remove onto
// what the device does.
func idevicebackup2Opts(system, remove bool) restoreOpts {
	return restoreOpts{system: system, remove: remove || removeWhenAbsent}
}

// expectRestore predicts the phone's tree after restoring a backup whose
// content is backup onto a phone whose content is current: every restored
// domain gets the backup's items; items absent from the backup are removed
// only with remove; domains not restored keep the phone's current items.
func expectRestore(current, backup tree, o restoreOpts) tree {
	restored := func(p string) bool { return o.system || !systemDomains[domain(p)] }
	want := tree{}
	for p, e := range current {
		if !restored(p) {
			want[p] = e
			continue
		}
		if _, ok := backup[p]; !ok && !o.remove {
			want[p] = e
		}
	}
	for p, e := range backup {
		if restored(p) {
			want[p] = e
		}
	}
	return want
}

// TestExpectRestore pins the restore model on a tiny example.
func TestExpectRestore(t *testing.T) {
	f := func(s string) entry { return entry{Kind: 'f', Size: int64(len(s)), Sum: s} }
	backup := tree{"HomeDomain/a": f("1"), "HomeDomain/b": f("2"), "RootDomain/r": f("3")}
	current := tree{"HomeDomain/a": f("9"), "HomeDomain/new": f("n"), "RootDomain/r": f("8"), "RootDomain/x": f("x")}

	assert.Equal(t, tree{"HomeDomain/a": f("1"), "HomeDomain/b": f("2"), "HomeDomain/new": f("n"),
		"RootDomain/r": f("8"), "RootDomain/x": f("x")}, expectRestore(current, backup, restoreOpts{}))
	assert.Equal(t, tree{"HomeDomain/a": f("1"), "HomeDomain/b": f("2"),
		"RootDomain/r": f("8"), "RootDomain/x": f("x")}, expectRestore(current, backup, restoreOpts{remove: true}))
	assert.Equal(t, backup, expectRestore(current, backup, restoreOpts{system: true, remove: true}))
	assert.Empty(t, diff(backup, backup.clone()))
	assert.Len(t, diff(backup, current), 5)
}
