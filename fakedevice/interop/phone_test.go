package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// change edits a phone's content tree the way a user's week would, so that
// a later backup or restore has something of every kind to carry: in one
// ordinary domain and one system domain it rewrites a file, deletes a
// file, adds a file in a new directory, and adds a symlink. round makes the
// names and contents of each call unique. It returns the changed paths.
func change(t *testing.T, files string, round int) []string {
	t.Helper()
	cur := readTree(t, files)
	var changed []string
	for _, dom := range []string{"HomeDomain", "RootDomain"} {
		var inDomain []string
		for p, e := range cur {
			if domain(p) == dom && e.Kind == 'f' {
				inDomain = append(inDomain, p)
			}
		}
		sort.Strings(inDomain)
		if len(inDomain) >= 2 {
			rewrite, remove := inDomain[round%len(inDomain)], inDomain[(round+1)%len(inDomain)]
			writeFile(t, files, rewrite, fmt.Sprintf("rewritten in round %d\n", round))
			require.NoError(t, os.Remove(filepath.Join(files, filepath.FromSlash(remove))))
			changed = append(changed, rewrite, remove)
		}
		added := fmt.Sprintf("%s/Library/Interop%d/added-%d.txt", dom, round, round)
		writeFile(t, files, added, fmt.Sprintf("added in round %d of %s\n", round, dom))
		link := fmt.Sprintf("%s/Library/Interop%d/link-%d", dom, round, round)
		require.NoError(t, os.Symlink(fmt.Sprintf("added-%d.txt", round), filepath.Join(files, filepath.FromSlash(link))))
		changed = append(changed, added, link)
	}
	return changed
}

// writeFile writes content to files/<rel>, creating directories.
func writeFile(t *testing.T, files, rel, content string) {
	t.Helper()
	p := filepath.Join(files, filepath.FromSlash(rel))
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
}

// extract reads a backup's content with `ibackup extract` into a tree, the
// independent check of what a backup holds.
func (r *rig) extract(backupDir string, args ...string) tree {
	r.t.Helper()
	out, err := os.MkdirTemp(r.dir, "extract-")
	require.NoError(r.t, err)
	defer os.RemoveAll(out)
	r.ibackup(append([]string{"extract", backupDir, out}, args...)...)
	return readTree(r.t, out)
}

var receivedRE = regexp.MustCompile(`Received (\d+) files from device`)

// received parses idevicebackup2's "Received N files from device." (-1
// when absent).
func received(out string) int {
	m := receivedRE.FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
