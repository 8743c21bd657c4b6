package snapshot

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const udid = "00008110-000A1B2C3D4E5F60"

func write(t *testing.T, p, s string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(s), 0o644))
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

// commitWith runs Begin, applies fn to the working <UDID> dir and commits.
func commitWith(t *testing.T, s *Store, fn func(u string)) Version {
	t.Helper()
	w, err := s.Begin()
	require.NoError(t, err)
	u := filepath.Join(w.Root(), udid)
	require.NoError(t, os.MkdirAll(u, 0o755))
	fn(u)
	v, err := w.Commit(&Record{Verified: true, Files: map[string]FileSum{"x": {Size: 1, SHA1: "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"}}})
	require.NoError(t, err)
	return v
}

func TestVersionsAreImmutable(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, udid)
	require.NoError(t, err)
	defer s.Close()
	v1 := commitWith(t, s, func(u string) { write(t, filepath.Join(u, "ab", "file"), "one") })
	assert.Equal(t, "one", read(t, filepath.Join(dir, udid, "ab", "file")))

	v2 := commitWith(t, s, func(u string) {
		p := filepath.Join(u, "ab", "file")
		require.NoError(t, os.Remove(p)) // the engine unlinks before writing
		write(t, p, "two")
		write(t, filepath.Join(u, "cd", "new"), "new")
	})
	assert.Equal(t, "two", read(t, filepath.Join(dir, udid, "ab", "file")))
	assert.Equal(t, "one", read(t, filepath.Join(v1.Path(udid), "ab", "file")))

	vs, err := s.Versions()
	require.NoError(t, err)
	require.Len(t, vs, 2)
	assert.Equal(t, v1.ID, vs[0].ID)
	assert.Equal(t, v2.ID, vs[1].ID)
	assert.True(t, vs[1].Current)
	require.NotNil(t, vs[1].Record)
	assert.Equal(t, udid, vs[1].Record.UDID)

	r, p, err := RecordFor(dir, udid)
	require.NoError(t, err)
	assert.Equal(t, v2.ID, r.ID)
	assert.Equal(t, filepath.Join(v2.Dir, RecordName), p)
	_, err = os.Stat(filepath.Join(dir, udid, RecordName))
	assert.True(t, os.IsNotExist(err), "record must not be inside <UDID>/")

	v3 := commitWith(t, s, func(string) {})
	removed, err := s.Prune(2)
	require.NoError(t, err)
	assert.Equal(t, []string{v1.ID}, removed)
	vs, err = s.Versions()
	require.NoError(t, err)
	assert.Len(t, vs, 2)
	assert.Equal(t, v3.ID, vs[1].ID)
	removed, err = s.Prune(0)
	require.NoError(t, err)
	assert.Equal(t, []string{v2.ID}, removed, "the current version is never pruned")
}

func TestAbortLeavesCurrent(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, udid)
	require.NoError(t, err)
	defer s.Close()
	commitWith(t, s, func(u string) { write(t, filepath.Join(u, "f"), "good") })
	w, err := s.Begin()
	require.NoError(t, err)
	p := filepath.Join(w.Root(), udid, "f")
	require.NoError(t, os.Remove(p))
	write(t, p, "bad")
	require.NoError(t, w.Abort())
	assert.Equal(t, "good", read(t, filepath.Join(dir, udid, "f")))
	_, err = os.Stat(w.Root())
	assert.True(t, os.IsNotExist(err))
}

func TestLockAndRecovery(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, udid)
	require.NoError(t, err)
	v := commitWith(t, s, func(u string) { write(t, filepath.Join(u, "f"), "good") })
	_, err = Open(dir, udid)
	assert.ErrorIs(t, err, ErrLocked)
	w, err := s.Begin() // an interrupted run
	require.NoError(t, err)
	require.NoError(t, s.Close())

	// Crash between renames: the link is gone.
	require.NoError(t, os.Remove(filepath.Join(dir, udid)))
	s, err = Open(dir, udid)
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, "good", read(t, filepath.Join(dir, udid, "f")))
	cur, ok, err := s.Current()
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, v.ID, cur.ID)
	_, err = os.Stat(w.Root())
	assert.True(t, os.IsNotExist(err), "leftover work dir removed")
}

func TestAdoptUnmanagedDirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, udid, "Manifest.db"), "old tool")
	s, err := Open(dir, udid)
	require.NoError(t, err)
	defer s.Close()
	vs, err := s.Versions()
	require.NoError(t, err)
	require.Len(t, vs, 1)
	assert.True(t, vs[0].Unmanaged)
	commitWith(t, s, func(u string) {
		assert.Equal(t, "old tool", read(t, filepath.Join(u, "Manifest.db")))
		p := filepath.Join(u, "Manifest.db")
		require.NoError(t, os.Remove(p))
		write(t, p, "new")
	})
	vs, err = s.Versions()
	require.NoError(t, err)
	require.Len(t, vs, 2)
	assert.Equal(t, "old tool", read(t, filepath.Join(vs[0].Path(udid), "Manifest.db")))
	assert.Nil(t, vs[0].Record)
	assert.Equal(t, "new", read(t, filepath.Join(dir, udid, "Manifest.db")))
	fi, err := os.Lstat(filepath.Join(dir, udid))
	require.NoError(t, err)
	assert.NotZero(t, fi.Mode()&os.ModeSymlink)
}

func TestOpenRejectsBadUDID(t *testing.T) {
	for _, u := range []string{"", "..", "a/b", ".hidden"} {
		_, err := Open(t.TempDir(), u)
		assert.Error(t, err, u)
	}
}

func TestRecordForPlainDirectory(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, udid), 0o755))
	_, _, err := RecordFor(dir, udid)
	assert.ErrorIs(t, err, ErrNoRecord)
}

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"format":1,"udid":"u","id":"x","files":{"ab/ab":{"size":3,"sha1":"00"}}}`))
	f.Add([]byte(`{"format":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			return
		}
		assert.Equal(t, 1, r.Format)
		assert.NotNil(t, r.Files)
	})
}

func TestListWithoutLock(t *testing.T) {
	dir := t.TempDir()
	vs, err := List(dir, udid)
	require.NoError(t, err)
	assert.Empty(t, vs)
	s, err := Open(dir, udid)
	require.NoError(t, err)
	defer s.Close()
	v := commitWith(t, s, func(u string) { write(t, filepath.Join(u, "f"), "x") })
	vs, err = List(dir, udid) // while the lock is held
	require.NoError(t, err)
	require.Len(t, vs, 1)
	assert.Equal(t, v.ID, vs[0].ID)
	ds, err := Devices(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{udid}, ds)
}
