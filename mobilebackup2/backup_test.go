package mobilebackup2_test

import (
	"crypto/sha1"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/mobilebackup2/snapshot"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func sha1hex(b []byte) string { s := sha1.Sum(b); return hex.EncodeToString(s[:]) }

func TestFullThenIncremental(t *testing.T) {
	content := t.TempDir()
	dir := t.TempDir()
	writeTree(t, content, map[string]string{
		"HomeDomain/Library/SMS/sms.db":          "messages v1",
		"HomeDomain/Library/Preferences/a.plist": "prefs",
		"HomeDomain/empty":                       "",
		"CameraRollDomain/Media/DCIM/IMG_1.JPG":  string(make([]byte, 100<<10)),
	})
	require.NoError(t, os.Symlink("Library/SMS/sms.db", filepath.Join(content, "HomeDomain/link")))
	cfg := backupagent.Config{ContentDir: content, WorkDir: t.TempDir()}

	res1, err, aerr := backupOnce(t, cfg, opts(dir))
	require.NoError(t, err)
	require.NoError(t, aerr)
	assert.True(t, res1.FullBackup)
	assert.Equal(t, 4, res1.FilesVerified)
	want1 := contentOf(t, content)
	assert.Equal(t, want1, decode(t, filepath.Join(dir, testUDID)))

	// Change the phone: modify, add, delete.
	writeTree(t, content, map[string]string{
		"HomeDomain/Library/SMS/sms.db": "messages v2 longer",
		"HomeDomain/Library/new.txt":    "new file",
	})
	require.NoError(t, os.Remove(filepath.Join(content, "HomeDomain/Library/Preferences/a.plist")))

	res2, err, aerr := backupOnce(t, cfg, opts(dir))
	require.NoError(t, err)
	require.NoError(t, aerr)
	assert.False(t, res2.FullBackup)
	assert.Equal(t, 2+6, res2.FilesReceived, "sms.db and new.txt, plus Status.plist ×4, Manifest.plist, Manifest.db")
	assert.Equal(t, contentOf(t, content), decode(t, filepath.Join(dir, testUDID)))

	// The first version is untouched and still verifies.
	assert.Equal(t, want1, decode(t, res1.Version.Path(testUDID)))
	assert.Empty(t, verifyRecord(t, res1.Version, testUDID))
	assert.Empty(t, verifyRecord(t, res2.Version, testUDID))

	st, err := snapshot.Open(dir, testUDID)
	require.NoError(t, err)
	defer st.Close()
	vs, err := st.Versions()
	require.NoError(t, err)
	require.Len(t, vs, 2)
	assert.True(t, vs[1].Current)
	r, _, err := snapshot.RecordFor(dir, testUDID)
	require.NoError(t, err)
	assert.Equal(t, res2.Version.ID, r.ID)
	assertOnlyEntries(t, dir, ".ibackup", testUDID)
}
