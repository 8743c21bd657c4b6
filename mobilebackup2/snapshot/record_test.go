package snapshot

import (
	"crypto/sha1"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestComparePathsMatchesWalkDir(t *testing.T) {
	dir := t.TempDir()
	names := []string{"a", "a-b", "a.b/c", "ab", "Manifest.db", "Manifest.plist", "00/00aa", "0a/0abb",
		"ff/ff00", "Info.plist", "b/c/d", "b/c-d", "b/c.d", "b-/x", "B", "a b/c"}
	for _, n := range names {
		p := filepath.Join(dir, filepath.FromSlash(n))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, nil, 0o644))
	}
	var walked []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if d.Type().IsRegular() {
			walked = append(walked, filepath.ToSlash(p[len(dir)+1:]))
		}
		return nil
	}))
	sorted := slices.Clone(walked)
	slices.SortFunc(sorted, ComparePaths)
	assert.Equal(t, walked, sorted, "WalkDir visits files in ComparePaths order")
	assert.Equal(t, -1, ComparePaths("a/b", "a-b"))
	assert.Equal(t, 1, ComparePaths("ab", "a/z"))
	assert.Equal(t, 0, ComparePaths("x/y", "x/y"))
	assert.Equal(t, -1, ComparePaths("x", "x/y"))
}

func entry(p string, size int64, ino uint64) Entry {
	return Entry{Path: p, Size: size, SHA1: sha1.Sum([]byte(p)), Ino: ino, MtimeNs: int64(ino)*1e9 - 5e9}
}

func TestRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, udid)
	require.NoError(t, err)
	defer s.Close()
	w, err := s.Begin()
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(w.Root(), udid), 0o755))
	rw, err := CreateRecord(PendingRecordPath(w.Root()))
	require.NoError(t, err)
	want := []Entry{entry("00/00ab", 3, 7), entry("Info.plist", 10, 8), entry("Manifest.db", 0, 0),
		entry("ab/\"quoted", 1, 9), entry("ab/new\nline", 2, 10), entry("ab/sp ace", 5, 11), entry("ff/ff", 1<<40, 12)}
	for _, e := range want {
		require.NoError(t, rw.Add(e))
	}
	assert.Error(t, rw.Add(entry("ab/a", 1, 1)), "out of order")
	rec, err := rw.Finish(Record{Verified: true, FullBackup: true})
	require.NoError(t, err)
	assert.EqualValues(t, len(want), rec.Count)
	assert.EqualValues(t, 3+10+1+2+5+1<<40, rec.Bytes)
	var got []Entry
	require.NoError(t, rec.Each(func(e Entry) error { got = append(got, e); return nil }))
	assert.Equal(t, want, got, "readable before the commit")

	v, err := w.Commit(rec)
	require.NoError(t, err)
	_, err = os.Stat(PendingRecordPath(w.Root()))
	assert.True(t, os.IsNotExist(err))
	r, p, err := RecordFor(dir, udid)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(v.Dir, RecordName), p)
	assert.Equal(t, v.ID, r.ID)
	assert.Equal(t, udid, r.UDID)
	assert.True(t, r.Verified)
	assert.True(t, r.FullBackup)
	assert.Nil(t, r.Files)
	assert.EqualValues(t, len(want), r.Count)
	got = nil
	require.NoError(t, r.Each(func(e Entry) error { got = append(got, e); return nil }))
	assert.Equal(t, want, got)

	c, err := r.NewCursor()
	require.NoError(t, err)
	defer c.Close()
	for _, tc := range []struct {
		path string
		ok   bool
	}{{"00/00aa", false}, {"00/00ab", true}, {"00/00ab", true}, {"Manifest.db", true}, {"ab/b", false}, {"ff/ff", true}, {"zz", false}} {
		e, ok, err := c.Lookup(tc.path)
		require.NoError(t, err)
		assert.Equal(t, tc.ok, ok, tc.path)
		if ok {
			assert.Equal(t, tc.path, e.Path)
		}
	}
}

func TestRecordFormat1StillRead(t *testing.T) {
	dir := t.TempDir()
	vdir := filepath.Join(dir, metaDir, udid, versionsDir, "20250101T000000.000000000Z")
	require.NoError(t, os.MkdirAll(filepath.Join(vdir, udid), 0o755))
	require.NoError(t, os.Symlink(filepath.Join(metaDir, udid, versionsDir, "20250101T000000.000000000Z", udid), filepath.Join(dir, udid)))
	sum := "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"
	write(t, filepath.Join(vdir, LegacyRecordName), `{"format":1,"udid":"`+udid+`","id":"x","verified":true,"files":{
		"ab-c":{"size":1,"sha1":"`+sum+`"},"ab/c":{"size":2,"sha1":"`+sum+`"},"Manifest.db":{"size":3,"sha1":"`+sum+`"}}}`)
	r, p, err := RecordFor(dir, udid)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(vdir, LegacyRecordName), p)
	assert.EqualValues(t, 3, r.Count)
	assert.EqualValues(t, 6, r.Bytes)
	var paths []string
	require.NoError(t, r.Each(func(e Entry) error {
		assert.Equal(t, sum, e.SumHex())
		paths = append(paths, e.Path)
		return nil
	}))
	assert.Equal(t, []string{"Manifest.db", "ab/c", "ab-c"}, paths)

	// The next run links the tree and writes format 2.
	s, err := Open(dir, udid)
	require.NoError(t, err)
	defer s.Close()
	cur, ok, err := s.Current()
	require.NoError(t, err)
	require.True(t, ok)
	require.NotNil(t, cur.Record)
	assert.Equal(t, 1, cur.Record.Format)
	v := commitWith(t, s, func(string) {})
	r, _, err = ReadRecordIn(v.Dir)
	require.NoError(t, err)
	assert.Equal(t, RecordFormat, r.Format)
}

func TestRecordDamagedEntries(t *testing.T) {
	for name, body := range map[string]string{
		"short":        "abc\n",
		"bad hex":      strings.Repeat("zz", 20) + " 1 2 p\n",
		"bad size":     strings.Repeat("00", 20) + " -1 2 3 p\n",
		"bad time":     strings.Repeat("00", 20) + " 1 2 x p\n",
		"no time":      strings.Repeat("00", 20) + " 1 2 p\n",
		"bad quote":    strings.Repeat("00", 20) + " 1 2 3 \"p\n",
		"out of order": strings.Repeat("00", 20) + " 1 2 3 b\n" + strings.Repeat("00", 20) + " 1 2 3 a\n",
		"unterminated": strings.Repeat("00", 20) + " 1 2 3 b",
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), RecordName)
			hdr, err := encodeHeader(&Record{UDID: udid})
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(p, append(hdr, body...), 0o644))
			r, err := ReadRecord(p)
			require.NoError(t, err)
			assert.Error(t, r.Each(func(Entry) error { return nil }))
		})
	}
}

func TestLinkTree(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	write(t, filepath.Join(src, "ab", "ab1"), "one")
	write(t, filepath.Join(src, "Manifest.db"), "db")
	require.NoError(t, os.MkdirAll(filepath.Join(src, "empty"), 0o755))
	require.NoError(t, os.Symlink("ab/ab1", filepath.Join(src, "link")))
	dst := filepath.Join(t.TempDir(), "dst")
	require.NoError(t, linkTree(src, dst))
	for _, n := range []string{"ab/ab1", "Manifest.db"} {
		a, err := os.Lstat(filepath.Join(src, n))
		require.NoError(t, err)
		b, err := os.Lstat(filepath.Join(dst, n))
		require.NoError(t, err)
		assert.True(t, os.SameFile(a, b), n)
		assert.EqualValues(t, 2, b.Sys().(*syscall.Stat_t).Nlink)
	}
	fi, err := os.Stat(filepath.Join(dst, "empty"))
	require.NoError(t, err)
	assert.True(t, fi.IsDir())
	l, err := os.Readlink(filepath.Join(dst, "link"))
	require.NoError(t, err)
	assert.Equal(t, "ab/ab1", l)
	assert.Error(t, linkTree(src, dst), "the destination must be new")
}

func FuzzRecordLine(f *testing.F) {
	f.Add([]byte(strings.Repeat("0a", 20) + " 12 34 1700000000123456789 ab/cd"))
	f.Add([]byte(strings.Repeat("0a", 20) + ` 1 0 -5 "a\nb"`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseLine(b)
		if err != nil {
			return
		}
		assert.GreaterOrEqual(t, e.Size, int64(0))
		assert.NotEmpty(t, e.Path)
	})
}

func FuzzRecordHeader(f *testing.F) {
	h, _ := encodeHeader(&Record{UDID: udid, Count: 3})
	f.Add(h)
	f.Add([]byte(headerMagic + "{\"format\":1}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseHeader(b)
		if err != nil {
			return
		}
		assert.Equal(t, RecordFormat, r.Format)
		assert.Nil(t, r.Files)
	})
}
