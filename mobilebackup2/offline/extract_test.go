package offline

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
)

func TestListAndDescribe(t *testing.T) {
	for _, o := range []buildOpts{{}, {password: testPassword}, {format: FormatMBDB, password: testPassword}} {
		dir := buildBackup(t, t.TempDir(), o)
		var all, cam []Entry
		require.NoError(t, List(dir, ListOptions{Options: Options{Password: o.password}}, func(e Entry) error {
			all = append(all, e)
			return nil
		}))
		assert.Len(t, all, 14)
		require.NoError(t, List(dir, ListOptions{Options: Options{Password: o.password}, Domain: "CameraRollDomain"}, func(e Entry) error {
			cam = append(cam, e)
			return nil
		}))
		require.Len(t, cam, 2)
		assert.Equal(t, Entry{Domain: "CameraRollDomain", Path: "Media/DCIM/IMG_0001.JPG", FileID: backupfmt.FileID("CameraRollDomain", "Media/DCIM/IMG_0001.JPG"),
			Type: "file", Size: 20000, Mode: "100644", UserID: 501, GroupID: 501, Modified: cam[1].Modified,
			Encrypted: o.password != ""}, cam[1])

		s, err := Describe(dir, Options{Password: o.password})
		require.NoError(t, err)
		assert.True(t, s.CountsKnown)
		assert.EqualValues(t, 8, s.Files)
		assert.EqualValues(t, 5, s.Dirs)
		assert.Equal(t, 3, s.Domains)
		assert.Equal(t, "Test iPhone", s.DeviceName)
		assert.Equal(t, testUDID, s.UDID)
		assert.Equal(t, o.password != "", s.Encrypted)
		assert.Equal(t, testNow, s.Date)
		assert.Positive(t, s.DiskSize)
	}
	// encrypted Manifest.db without a password: plists only
	dir := buildBackup(t, t.TempDir(), buildOpts{password: testPassword})
	s, err := Describe(dir, Options{})
	require.NoError(t, err)
	assert.False(t, s.CountsKnown)
	assert.True(t, s.Encrypted)
	assert.Equal(t, "14.3", s.ProductVersion)
	err = List(dir, ListOptions{}, func(Entry) error { return nil })
	assert.ErrorIs(t, err, ErrPasswordRequired)

	// encrypted mbdb without a password: the manifest is plain, counts are known
	dir = buildBackup(t, t.TempDir(), buildOpts{format: FormatMBDB, password: testPassword})
	s, err = Describe(dir, Options{})
	require.NoError(t, err)
	assert.True(t, s.CountsKnown)
	assert.True(t, s.Encrypted)
	assert.Equal(t, FormatMBDB, s.Format)
	assert.EqualValues(t, 8, s.Files)
	assert.Equal(t, "9.3.6", s.ProductVersion)
}

func TestExtract(t *testing.T) {
	for _, o := range []buildOpts{{}, {password: testPassword}, {format: FormatMBDB, password: testPassword}} {
		dir := buildBackup(t, t.TempDir(), o)
		out := filepath.Join(t.TempDir(), "out")
		rep, err := Extract(dir, out, ExtractOptions{Options: Options{Password: o.password}})
		require.NoError(t, err)
		assert.EqualValues(t, 8, rep.Files)
		assert.EqualValues(t, 5, rep.Dirs)
		assert.EqualValues(t, 1, rep.Symlinks)
		assert.Empty(t, rep.Skipped)
		assert.Empty(t, rep.SizeMismatch)

		got, err := os.ReadFile(filepath.Join(out, "HomeDomain/Library/SMS/sms.db"))
		require.NoError(t, err)
		assert.Equal(t, []byte("sqlite-ish sms data"), got)
		st, err := os.Stat(filepath.Join(out, "AppDomain-com.example.app/Documents/file001.txt"))
		require.NoError(t, err)
		assert.EqualValues(t, 137, st.Size())
		assert.Equal(t, testNow.Unix()-int64(9*60), st.ModTime().Unix(), "mtime kept")
		st, err = os.Stat(filepath.Join(out, "HomeDomain/Library/SMS"))
		require.NoError(t, err)
		assert.Equal(t, testNow.Add(-2*time.Minute).Unix(), st.ModTime().Unix(), "directory mtime kept")
		link, err := os.Readlink(filepath.Join(out, "HomeDomain/Library/link"))
		require.NoError(t, err)
		assert.Equal(t, "SMS/sms.db", link)
		empty, err := os.ReadFile(filepath.Join(out, "HomeDomain/Library/empty"))
		require.NoError(t, err)
		assert.Empty(t, empty)
	}
}

func TestExtractFilters(t *testing.T) {
	dir := buildBackup(t, t.TempDir(), buildOpts{})
	out := t.TempDir()
	rep, err := Extract(dir, out, ExtractOptions{Domain: "HomeDomain", PathGlob: "Library/SMS"})
	require.NoError(t, err)
	assert.EqualValues(t, 1, rep.Files)
	assert.Equal(t, []string{"HomeDomain/Library/SMS/sms.db"}, listFiles(t, out))

	out = t.TempDir()
	rep, err = Extract(dir, out, ExtractOptions{PathGlob: "Documents/file00[12].txt"})
	require.NoError(t, err)
	assert.EqualValues(t, 2, rep.Files)

	_, err = Extract(dir, out, ExtractOptions{PathGlob: "[bad"})
	assert.Error(t, err)
}

func TestExtractWrongPasswordWritesNothing(t *testing.T) {
	dir := buildBackup(t, t.TempDir(), buildOpts{password: testPassword})
	out := filepath.Join(t.TempDir(), "out")
	_, err := Extract(dir, out, ExtractOptions{Options: Options{Password: "nope"}})
	assert.ErrorIs(t, err, ErrWrongPassword)
	_, err = os.Stat(out)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// TestExtractPathSafety crafts hostile records: traversal in paths and
// domains, absolute symlinks, and a symlinked directory followed by a file
// below it. Nothing may appear outside out.
func TestExtractPathSafety(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "bk", testUDID)
	w, err := NewWriter(dir, WriterConfig{Rand: testRand(3)})
	require.NoError(t, err)
	add := func(domain, rel string, mode uint16, target string, content []byte) {
		f := &backupfmt.MBFile{RelativePath: rel, Mode: mode, Target: target}
		var r *bytes.Reader
		if content != nil {
			r = bytes.NewReader(content)
		}
		rec := backupfmt.Record{Domain: domain, RelativePath: rel, File: f}
		if r != nil {
			require.NoError(t, w.Add(rec, r))
		} else {
			require.NoError(t, w.Add(rec, nil))
		}
	}
	add("HomeDomain", "../../escape1", 0o100644, "", []byte("x"))
	add("HomeDomain", "/abs/escape2", 0o100644, "", []byte("x"))
	add("..", "escape3", 0o100644, "", []byte("x"))
	add("Evil/Domain", "escape4", 0o100644, "", []byte("x"))
	add("HomeDomain", "a/./b", 0o100644, "", []byte("x"))
	add("HomeDomain", "up", 0o120755, "../../..", nil)
	add("HomeDomain", "abs", 0o120755, "/etc", nil)
	add("HomeDomain", "abs/escape5", 0o100644, "", []byte("x"))
	add("HomeDomain", "ok", 0o100644, "", []byte("fine"))
	require.NoError(t, w.Close())

	out := filepath.Join(root, "out")
	rep, err := Extract(dir, out, ExtractOptions{})
	require.NoError(t, err)
	assert.EqualValues(t, 2, rep.Files) // ok and abs/escape5 (a real directory, the symlink was refused)
	assert.Len(t, rep.Skipped, 7)
	assert.Equal(t, []string{"HomeDomain/abs/escape5", "HomeDomain/ok"}, listFiles(t, out))
	ents, err := os.ReadDir(root)
	require.NoError(t, err)
	assert.Len(t, ents, 2, "nothing written beside out")
}
