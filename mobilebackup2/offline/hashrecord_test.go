package offline

import (
	"crypto/sha1"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/snapshot"
)

// storeBackup builds a backup and commits it into a snapshot store with a
// streamed (format 2) record of its files; it returns DIR/<UDID>.
func storeBackup(t *testing.T, o buildOpts) string {
	t.Helper()
	dir := t.TempDir()
	st, err := snapshot.Open(dir, testUDID)
	require.NoError(t, err)
	defer st.Close()
	w, err := st.Begin()
	require.NoError(t, err)
	udidDir := buildBackup(t, w.Root(), o)
	rw, err := snapshot.CreateRecord(snapshot.PendingRecordPath(w.Root()))
	require.NoError(t, err)
	require.NoError(t, filepath.WalkDir(udidDir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		return rw.Add(snapshot.Entry{Path: filepath.ToSlash(p[len(udidDir)+1:]), Size: int64(len(b)), SHA1: sha1.Sum(b)})
	}))
	rec, err := rw.Finish(snapshot.Record{Verified: true})
	require.NoError(t, err)
	_, err = w.Commit(rec)
	require.NoError(t, err)
	return filepath.Join(dir, testUDID)
}

func TestVerifyStreamedRecord(t *testing.T) {
	for _, format := range []Format{FormatManifestDB, FormatMBDB} {
		t.Run(string(format), func(t *testing.T) {
			dir := storeBackup(t, buildOpts{format: format})
			rep, err := Verify(dir, VerifyOptions{})
			require.NoError(t, err)
			assert.True(t, rep.UsedHashRecord)
			assert.Empty(t, kinds(rep))

			// Same size, one byte flipped, no digest in the manifest: only
			// the record catches it; a metadata file too.
			b, err := Open(dir, Options{})
			require.NoError(t, err)
			p := b.ContentPath(backupfmt.FileID(appDom, f1))
			require.NoError(t, b.Close())
			for _, f := range []string{p, filepath.Join(dir, InfoPlist)} {
				data, err := os.ReadFile(f)
				require.NoError(t, err)
				data[len(data)/2] ^= 1
				require.NoError(t, os.WriteFile(f, data, 0o644))
			}
			rep, err = Verify(dir, VerifyOptions{})
			require.NoError(t, err)
			assert.Contains(t, kinds(rep), "checksum-mismatch:"+f1)
			assert.Contains(t, kinds(rep), "checksum-mismatch:"+InfoPlist)
		})
	}
}

func TestVerifyDamagedRecord(t *testing.T) {
	dir := storeBackup(t, buildOpts{})
	real, err := filepath.EvalSymlinks(dir)
	require.NoError(t, err)
	rp := filepath.Join(filepath.Dir(real), snapshot.RecordName)
	b, err := os.ReadFile(rp)
	require.NoError(t, err)
	const headerSize = 1024 // the header line is fixed-size
	b = append(b[:headerSize:headerSize], append([]byte("not a record line\n"), b[headerSize:]...)...)
	require.NoError(t, os.WriteFile(rp, b, 0o644))
	rep, err := Verify(dir, VerifyOptions{})
	require.NoError(t, err)
	assert.Contains(t, kinds(rep), "metadata:"+snapshot.RecordName)
}
