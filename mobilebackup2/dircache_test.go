//go:build unix

package mobilebackup2

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSplitName(t *testing.T) {
	for _, tc := range []struct{ in, dir, name string }{
		{"a", ".", "a"},
		{"U/Status.plist", "U", "Status.plist"},
		{"U/Snapshot/ab/abc", "U/Snapshot/ab", "abc"},
	} {
		d, n, err := splitName(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.dir, d, tc.in)
		assert.Equal(t, tc.name, n, tc.in)
	}
	for _, in := range []string{"", "a/", "a/..", "..", "a/.", "a\x00b"} {
		_, _, err := splitName(in)
		assert.ErrorIs(t, err, ErrUnsafePath, in)
	}
}

// cacheRoot returns an os.Root on a fresh directory and a dirCache on it.
func cacheRoot(t *testing.T) (string, *os.Root, *dirCache) {
	t.Helper()
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	require.NoError(t, err)
	c := newDirCache(root)
	t.Cleanup(func() {
		c.flush()
		root.Close()
	})
	return dir, root, c
}

func TestDirCacheCreate(t *testing.T) {
	dir, _, c := cacheRoot(t)
	// Missing parents are created.
	f, err := c.create("U/Snapshot/ab/file")
	require.NoError(t, err)
	_, err = f.WriteString("new")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	assertFile(t, filepath.Join(dir, "U/Snapshot/ab/file"), "new")

	// An existing file is a hard link into an older version: it is
	// replaced by a new inode, never written into.
	old := filepath.Join(dir, "old")
	require.NoError(t, os.WriteFile(old, []byte("old version"), 0o644))
	require.NoError(t, os.Link(old, filepath.Join(dir, "U/Snapshot/ab/linked")))
	f, err = c.create("U/Snapshot/ab/linked")
	require.NoError(t, err)
	_, err = f.WriteString("this run")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	assertFile(t, old, "old version")
	assertFile(t, filepath.Join(dir, "U/Snapshot/ab/linked"), "this run")

	// A symlink at the name is replaced, not followed.
	outside := filepath.Join(t.TempDir(), "target")
	require.NoError(t, os.WriteFile(outside, []byte("outside"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "U/Snapshot/ab/sym")))
	f, err = c.create("U/Snapshot/ab/sym")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	assertFile(t, outside, "outside")
	fi, err := os.Lstat(filepath.Join(dir, "U/Snapshot/ab/sym"))
	require.NoError(t, err)
	assert.True(t, fi.Mode().IsRegular())

	// An empty directory at the name is replaced, also when it was
	// cached; the parent stays usable.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "U/e"), 0o755))
	f, err = c.create("U/e/inside")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.Remove(filepath.Join(dir, "U/e/inside")))
	f, err = c.create("U/e")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	assert.NotContains(t, c.open, "U/e")
	f, err = c.create("U/after")
	require.NoError(t, err)
	require.NoError(t, f.Close())

	// A non-empty directory at the name stays.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "U/d/x"), 0o755))
	_, err = c.create("U/d")
	assert.Error(t, err)
	assert.DirExists(t, filepath.Join(dir, "U/d/x"))
}

func TestDirCacheConfined(t *testing.T) {
	dir, _, c := cacheRoot(t)
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "evil")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "in"), []byte("in"), 0o644))

	_, err := c.create("evil/pwned")
	assert.Error(t, err)
	assert.NoFileExists(t, filepath.Join(outside, "pwned"))
	assert.Error(t, c.unlink("evil/secret"))
	assert.Error(t, c.rename("in", "evil/in"))
	assert.Error(t, c.rename("evil/secret", "stolen"))
	assertFile(t, filepath.Join(outside, "secret"), "secret")
	assert.NoFileExists(t, filepath.Join(outside, "in"))
	assert.NoFileExists(t, filepath.Join(dir, "stolen"))
}

func TestDirCacheRenameUnlink(t *testing.T) {
	dir, _, c := cacheRoot(t)
	for _, p := range []string{"U/Snapshot/ab/f", "U/Snapshot/ab/g", "U/ab/g"} {
		f, err := c.create(p)
		require.NoError(t, err)
		_, err = f.WriteString(p)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
	// Into a missing directory, and onto an existing file.
	require.NoError(t, c.rename("U/Snapshot/ab/f", "U/cd/f"))
	assertFile(t, filepath.Join(dir, "U/cd/f"), "U/Snapshot/ab/f")
	require.NoError(t, c.rename("U/Snapshot/ab/g", "U/ab/g"))
	assertFile(t, filepath.Join(dir, "U/ab/g"), "U/Snapshot/ab/g")
	assert.ErrorIs(t, c.rename("U/Snapshot/ab/f", "U/x"), fs.ErrNotExist)
	// Never onto a directory.
	assert.Error(t, c.rename("U/ab/g", "U/cd"))

	require.NoError(t, c.unlink("U/ab/g"))
	assert.NoFileExists(t, filepath.Join(dir, "U/ab/g"))
	assert.ErrorIs(t, c.unlink("U/ab/g"), fs.ErrNotExist)
	// Directories, even empty ones, are left to the general path.
	err := c.unlink("U/Snapshot/ab")
	require.Error(t, err)
	assert.True(t, isDirRefusal(err), "%v", err)
	assert.DirExists(t, filepath.Join(dir, "U/Snapshot/ab"))
}

func isDirRefusal(err error) bool {
	var en syscall.Errno
	if !errors.As(err, &en) {
		return false
	}
	return en == syscall.EISDIR || en == syscall.EPERM
}

func TestDirCacheFlushAndBound(t *testing.T) {
	dir, root, c := cacheRoot(t)
	f, err := c.create("U/ab/f")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	// The directory is replaced behind the cache's back; after a flush
	// the new one is used.
	require.NoError(t, root.RemoveAll("U/ab"))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "U/ab"), 0o755))
	c.flush()
	f, err = c.create("U/ab/g")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	assert.FileExists(t, filepath.Join(dir, "U/ab/g"))

	c.max = 4
	for i := range 3 * c.max {
		// Both directories of a rename stay open while it runs.
		p := filepath.Join("many", string(rune('a'+i)), "f")
		f, err := c.create(p)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		require.NoError(t, c.rename(p, filepath.Join("moved", string(rune('a'+i)), "f")))
		assert.LessOrEqual(t, len(c.open), c.max)
		assert.Empty(t, c.retired)
	}
	assert.FileExists(t, filepath.Join(dir, "moved/a/f"))
}

func assertFile(t *testing.T, p, want string) {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, want, string(b))
}
