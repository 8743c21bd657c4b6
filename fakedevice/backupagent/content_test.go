package backupagent

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
)

// TestScan: every domain yields its root, directories, regular files and
// symlinks with lstat metadata; sockets are left out; items are sorted by
// fileID.
func TestScan(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "HomeDomain")
	require.NoError(t, os.MkdirAll(filepath.Join(home, "Library", "Prefs"), 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(home, "Library", "Prefs", "a.plist"), []byte("12345"), 0o600))
	require.NoError(t, os.Symlink("Prefs/a.plist", filepath.Join(home, "Library", "link")))
	mtime := time.Unix(1700000000, 0)
	require.NoError(t, os.Chtimes(filepath.Join(home, "Library", "Prefs", "a.plist"), mtime, mtime))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "MediaDomain"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "not-a-domain"), nil, 0o644))
	if l, err := net.Listen("unix", filepath.Join(home, "sock")); err == nil {
		defer l.Close()
	}

	items, err := scan(dir)
	require.NoError(t, err)
	got := map[string]*backupfmt.MBFile{}
	for i, it := range items {
		if i > 0 {
			assert.Less(t, items[i-1].rec.FileID, it.rec.FileID)
		}
		assert.Equal(t, backupfmt.FileID(it.rec.Domain, it.rec.RelativePath), it.rec.FileID)
		assert.Equal(t, it.rec.File.Type(), it.rec.Flags)
		got[it.rec.Domain+":"+it.rec.RelativePath] = it.rec.File
	}
	want := map[string]struct {
		mode   uint16
		size   int64
		target string
	}{
		"HomeDomain:":                      {mode: backupfmt.ModeDirectory | 0o750},
		"HomeDomain:Library":               {mode: backupfmt.ModeDirectory | 0o750},
		"HomeDomain:Library/Prefs":         {mode: backupfmt.ModeDirectory | 0o750},
		"HomeDomain:Library/Prefs/a.plist": {mode: backupfmt.ModeRegular | 0o600, size: 5},
		"HomeDomain:Library/link":          {mode: backupfmt.ModeSymlink | 0o777, target: "Prefs/a.plist"},
		"MediaDomain:":                     {mode: backupfmt.ModeDirectory | 0o755},
	}
	require.Len(t, got, len(want))
	for k, w := range want {
		f := got[k]
		require.NotNil(t, f, k)
		assert.Equal(t, w.mode, f.Mode, k)
		assert.Equal(t, w.size, f.Size, k)
		assert.Equal(t, w.target, f.Target, k)
		assert.NotZero(t, f.InodeNumber, k)
		assert.NotZero(t, f.LastStatusChange, k)
	}
	assert.Equal(t, mtime.Unix(), got["HomeDomain:Library/Prefs/a.plist"].LastModified)
	assert.Equal(t, mtime.Unix(), got["HomeDomain:Library/Prefs/a.plist"].Birth)
}
