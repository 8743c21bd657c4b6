package mobilebackup2_test

import (
	"crypto/sha1"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/mobilebackup2/offline"
	"github.com/ibackup/ibackup/mobilebackup2/snapshot"
)

// recordOf reads a version's streamed record whole (small test trees).
func recordOf(t *testing.T, v snapshot.Version) (*snapshot.Record, map[string]snapshot.Entry) {
	t.Helper()
	r, _, err := snapshot.ReadRecordIn(v.Dir)
	require.NoError(t, err)
	out := map[string]snapshot.Entry{}
	require.NoError(t, r.Each(func(e snapshot.Entry) error {
		out[e.Path] = e
		return nil
	}))
	return r, out
}

// treeOf lists the regular files under a version's <UDID>/ folder.
func treeOf(t *testing.T, dir string) map[string]snapshot.Entry {
	t.Helper()
	out := map[string]snapshot.Entry{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		fi, err := d.Info()
		require.NoError(t, err)
		rel := filepath.ToSlash(p[len(dir)+1:])
		st := fi.Sys().(*syscall.Stat_t)
		out[rel] = snapshot.Entry{Path: rel, Size: int64(len(b)), SHA1: sha1.Sum(b), Ino: st.Ino, MtimeNs: fi.ModTime().UnixNano()}
		return nil
	}))
	return out
}

// TestRecordMatchesTree: the streamed record of a full and an incremental
// run names every stored file with its size, SHA-1 and inode; unchanged
// files keep the base version's inode; a later offline verify uses it.
func TestRecordMatchesTree(t *testing.T) {
	content := t.TempDir()
	dir := t.TempDir()
	writeTree(t, content, map[string]string{
		"HomeDomain/Library/SMS/sms.db":          "messages v1",
		"HomeDomain/Library/Preferences/a.plist": "prefs",
		"CameraRollDomain/Media/DCIM/IMG_1.JPG":  string(make([]byte, 70<<10)),
	})
	cfg := backupagent.Config{ContentDir: content, WorkDir: t.TempDir()}
	res1, err, aerr := backupOnce(t, cfg, opts(dir))
	require.NoError(t, err)
	require.NoError(t, aerr)
	r1, rec1 := recordOf(t, res1.Version)
	assert.Equal(t, snapshot.RecordFormat, r1.Format)
	assert.True(t, r1.Verified)
	assert.Equal(t, treeOf(t, res1.Version.Path(testUDID)), rec1)
	assert.EqualValues(t, len(rec1), r1.Count)
	assert.Contains(t, rec1, "Manifest.db")

	writeTree(t, content, map[string]string{"HomeDomain/Library/SMS/sms.db": "messages v2"})
	res2, err, aerr := backupOnce(t, cfg, opts(dir))
	require.NoError(t, err)
	require.NoError(t, aerr)
	_, rec2 := recordOf(t, res2.Version)
	assert.Equal(t, treeOf(t, res2.Version.Path(testUDID)), rec2)
	same := 0
	for p, e := range rec2 {
		if b, ok := rec1[p]; ok && b.Ino == e.Ino {
			same++
			assert.Equal(t, b.SHA1, e.SHA1, p)
		}
	}
	assert.Positive(t, same, "unchanged files are the base version's inodes")

	rep, err := offline.Verify(filepath.Join(dir, testUDID), offline.VerifyOptions{})
	require.NoError(t, err)
	assert.True(t, rep.UsedHashRecord)
	assert.Empty(t, rep.Problems)

	// Bit rot in a stored file is found through the record.
	for p := range rec2 {
		if len(p) == 43 { // <xx>/<fileID>
			f := filepath.Join(res2.Version.Path(testUDID), filepath.FromSlash(p))
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			b[0] ^= 1
			require.NoError(t, os.WriteFile(f, b, 0o644))
			break
		}
	}
	rep, err = offline.Verify(filepath.Join(dir, testUDID), offline.VerifyOptions{})
	require.NoError(t, err)
	var kinds []offline.Kind
	for _, p := range rep.Problems {
		kinds = append(kinds, p.Kind)
	}
	assert.Contains(t, kinds, offline.KindChecksumMismatch)
}

// TestDamagedBaseRecord: a damaged record of the current version only
// costs speed; the next run hashes what it cannot take from it.
func TestDamagedBaseRecord(t *testing.T) {
	content := t.TempDir()
	dir := t.TempDir()
	writeTree(t, content, map[string]string{"HomeDomain/a": "one", "HomeDomain/b": "two"})
	cfg := backupagent.Config{ContentDir: content, WorkDir: t.TempDir()}
	res1, err, aerr := backupOnce(t, cfg, opts(dir))
	require.NoError(t, err)
	require.NoError(t, aerr)
	rp := filepath.Join(res1.Version.Dir, snapshot.RecordName)
	b, err := os.ReadFile(rp)
	require.NoError(t, err)
	const headerSize = 1024 // the header line is fixed-size
	b = append(b[:headerSize:headerSize], append([]byte("damaged\n"), b[headerSize:]...)...)
	require.NoError(t, os.WriteFile(rp, b, 0o644))

	writeTree(t, content, map[string]string{"HomeDomain/b": "two, changed"})
	res2, err, aerr := backupOnce(t, cfg, opts(dir))
	require.NoError(t, err)
	require.NoError(t, aerr)
	_, rec2 := recordOf(t, res2.Version)
	assert.Equal(t, treeOf(t, res2.Version.Path(testUDID)), rec2)
}
