package backupfmt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeTestDB writes n file rows in two domains plus one directory row.
func writeTestDB(t *testing.T, path string, n int) []Record {
	t.Helper()
	w, err := CreateManifestDB(path)
	require.NoError(t, err)
	var recs []Record
	recs = append(recs, Record{Domain: "HomeDomain", RelativePath: "Library", File: &MBFile{RelativePath: "Library", Mode: 0o40755}})
	for i := 0; i < n; i++ {
		dom := "HomeDomain"
		if i%2 == 1 {
			dom = "AppDomain-com.example.app"
		}
		rel := fmt.Sprintf("Library/f%d", i)
		recs = append(recs, Record{Domain: dom, RelativePath: rel, File: &MBFile{RelativePath: rel, Mode: 0o100644, Size: int64(i), UserID: 501, GroupID: 501}})
	}
	for _, r := range recs {
		require.NoError(t, w.Add(r))
	}
	require.NoError(t, w.SetProperty("salt", []byte{1, 2, 3}))
	require.NoError(t, w.Close())
	for i := range recs {
		recs[i].FileID = FileID(recs[i].Domain, recs[i].RelativePath)
		recs[i].Flags = recs[i].File.Type()
	}
	return recs
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func TestManifestDBRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "Manifest.db")
	recs := writeTestDB(t, path, 10)
	assert.Equal(t, []string{"Manifest.db"}, dirNames(t, dir), "writer leaves only the database")

	// Header: page size 4096, WAL (read/write version 2), user_version 2
	// (real-device-profile.md).
	hdr := make([]byte, 100)
	fh, err := os.Open(path)
	require.NoError(t, err)
	_, err = fh.ReadAt(hdr, 0)
	require.NoError(t, err)
	fh.Close()
	assert.Equal(t, "SQLite format 3\x00", string(hdr[:16]))
	assert.Equal(t, uint16(4096), binary.BigEndian.Uint16(hdr[16:]))
	assert.Equal(t, []byte{2, 2}, hdr[18:20])
	assert.Equal(t, uint32(2), binary.BigEndian.Uint32(hdr[60:]))
	assert.NotZero(t, binary.BigEndian.Uint32(hdr[52:]), "auto_vacuum on")
	assert.Equal(t, uint32(1), binary.BigEndian.Uint32(hdr[64:]), "incremental vacuum")

	require.NoError(t, os.Chmod(dir, 0o555)) // a read-only backup must still open
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	db, err := OpenManifestDB(path)
	require.NoError(t, err)
	n, err := db.Count()
	require.NoError(t, err)
	assert.EqualValues(t, len(recs), n)

	var got []Record
	require.NoError(t, db.Each(func(r Record) error { got = append(got, r); return nil }))
	assert.Equal(t, recs, got)

	var app int
	require.NoError(t, db.EachDomain("AppDomain-com.example.app", func(r Record) error { app++; return nil }))
	assert.Equal(t, 5, app)

	r, err := db.Lookup(recs[3].FileID)
	require.NoError(t, err)
	assert.Equal(t, recs[3], r)
	_, err = db.Lookup(FileID("x", "y"))
	assert.ErrorIs(t, err, ErrNotFound)

	props, err := db.Properties()
	require.NoError(t, err)
	assert.Equal(t, map[string][]byte{"salt": {1, 2, 3}}, props)

	stop := errors.New("stop")
	assert.Equal(t, stop, db.Each(func(Record) error { return stop }))
	assert.Equal(t, []string{"Manifest.db"}, dirNames(t, dir), "no -wal/-shm while open")
	require.NoError(t, db.Close())
	assert.Equal(t, []string{"Manifest.db"}, dirNames(t, dir), "no -wal/-shm after close")
}

func TestManifestDBBadRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Manifest.db")
	w, err := CreateManifestDB(path)
	require.NoError(t, err)
	require.NoError(t, w.Add(Record{Domain: "D", RelativePath: "nil", Flags: FlagFile}))
	require.NoError(t, w.Close())
	db, err := OpenManifestDB(path)
	require.NoError(t, err)
	defer db.Close()
	var rs []Record
	require.NoError(t, db.Each(func(r Record) error { rs = append(rs, r); return nil }))
	require.Len(t, rs, 1)
	assert.Nil(t, rs[0].File)
	assert.ErrorIs(t, rs[0].FileErr, ErrMalformed)
}

func TestOpenManifestDBErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := OpenManifestDB(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)

	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	_, err = OpenManifestDB(empty)
	assert.ErrorIs(t, err, ErrEmpty)

	junk := filepath.Join(dir, "junk")
	require.NoError(t, os.WriteFile(junk, make([]byte, 4096), 0o644)) // like an encrypted DB
	_, err = OpenManifestDB(junk)
	assert.ErrorIs(t, err, ErrNotManifestDB)

	_, err = OpenManifestDB(dir)
	assert.ErrorIs(t, err, ErrNotManifestDB)
	assert.Equal(t, []string{"empty", "junk"}, dirNames(t, dir))
}

func TestManifestWriterAbort(t *testing.T) {
	dir := t.TempDir()
	w, err := CreateManifestDB(filepath.Join(dir, "Manifest.db"))
	require.NoError(t, err)
	require.NoError(t, w.Add(Record{Domain: "D", RelativePath: "x", File: &MBFile{Mode: 0o100644}}))
	w.Abort()
	assert.Empty(t, dirNames(t, dir))
	assert.Error(t, w.Add(Record{Domain: "D", RelativePath: "y", File: &MBFile{}}))
}

// TestUpdateManifestDB: rows are replaced, added and deleted in place; no
// -wal/-shm is left; Abort rolls back and keeps the database.
func TestUpdateManifestDB(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "Manifest.db")
	recs := writeTestDB(t, path, 4)
	changed := recs[1]
	changed.File = &MBFile{RelativePath: changed.RelativePath, Mode: 0o100644, Size: 99}
	added := Record{Domain: "HomeDomain", RelativePath: "Library/new", File: &MBFile{RelativePath: "Library/new", Mode: 0o100600, Size: 7}}
	gone := FileID(recs[2].Domain, recs[2].RelativePath)

	w, err := UpdateManifestDB(path)
	require.NoError(t, err)
	require.NoError(t, w.Add(changed))
	require.NoError(t, w.Add(added))
	require.NoError(t, w.Delete(gone))
	require.NoError(t, w.Delete("0000000000000000000000000000000000000000"), "a missing row is fine")
	require.NoError(t, w.Close())
	assert.Equal(t, []string{"Manifest.db"}, dirNames(t, dir))

	db, err := OpenManifestDB(path)
	require.NoError(t, err)
	n := 0
	require.NoError(t, db.Each(func(Record) error { n++; return nil }))
	assert.Equal(t, len(recs), n, "one row added, one deleted")
	r, err := db.Lookup(FileID(changed.Domain, changed.RelativePath))
	require.NoError(t, err)
	assert.Equal(t, int64(99), r.File.Size)
	r, err = db.Lookup(FileID(added.Domain, added.RelativePath))
	require.NoError(t, err)
	assert.Equal(t, int64(7), r.File.Size)
	_, err = db.Lookup(gone)
	assert.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, db.Close())

	w, err = UpdateManifestDB(path)
	require.NoError(t, err)
	require.NoError(t, w.Delete(FileID(added.Domain, added.RelativePath)))
	w.Abort()
	db, err = OpenManifestDB(path)
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Lookup(FileID(added.Domain, added.RelativePath))
	assert.NoError(t, err, "Abort rolled the delete back and kept the database")

	_, err = UpdateManifestDB(filepath.Join(dir, "missing.db"))
	assert.Error(t, err)
}
