package backupagent_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/mobilebackup2"
	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/snapshot"
)

// mbdbRecords reads every record of dir/<udid>/Manifest.mbdb by fileID.
func mbdbRecords(t *testing.T, dir string) map[string]backupfmt.Record {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, udid, "Manifest.mbdb"))
	require.NoError(t, err)
	defer f.Close()
	r, err := backupfmt.NewMBDBReader(f)
	require.NoError(t, err)
	out := map[string]backupfmt.Record{}
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out[rec.FileID] = rec
	}
}

func restore(t *testing.T, cfg backupagent.Config, o mobilebackup2.RestoreOptions) error {
	t.Helper()
	c, done := start(t, cfg)
	_, err := c.Handshake(context.Background())
	require.NoError(t, err)
	_, err = c.Restore(context.Background(), o)
	c.Close()
	require.NoError(t, <-done)
	return err
}

// TestMBDBBackupLayout: an iOS 9 phone writes Manifest.mbdb, Status 2.4,
// Manifest.plist 9.1 and stores files flat as <UDID>/<fileID> (§5.7).
func TestMBDBBackupLayout(t *testing.T) {
	cdir, dir := content(t), t.TempDir()
	cfg := backupagent.Config{ContentDir: cdir, WorkDir: t.TempDir(), MBDB: true, DLMajor: 300}
	res, err := backup(t, cfg, backupOpts(dir))
	require.NoError(t, err)
	assert.True(t, res.FullBackup)
	assert.Equal(t, 1, res.FilesVerified)

	u := filepath.Join(dir, udid)
	assert.NoFileExists(t, filepath.Join(u, "Manifest.db"))
	assert.NoDirExists(t, filepath.Join(u, "Snapshot"))
	id := backupfmt.FileID("HomeDomain", "Library/a.txt")
	b, err := os.ReadFile(filepath.Join(u, id))
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	ents, err := os.ReadDir(u)
	require.NoError(t, err)
	for _, e := range ents {
		assert.False(t, e.IsDir(), "flat layout: no folder %s", e.Name())
	}
	st, err := backupfmt.ReadStatus(filepath.Join(u, "Status.plist"))
	require.NoError(t, err)
	assert.Equal(t, "2.4", st.Version)
	assert.Equal(t, backupfmt.SnapshotFinished, st.SnapshotState)
	mf, err := backupfmt.ReadManifest(filepath.Join(u, "Manifest.plist"))
	require.NoError(t, err)
	assert.Equal(t, backupfmt.ManifestVersionMBDB, mf.Version)

	recs := mbdbRecords(t, dir)
	require.Contains(t, recs, id)
	assert.Equal(t, int64(5), recs[id].File.Size)
	assert.Len(t, recs[id].File.Digest, 20)
	dirRec := recs[backupfmt.FileID("HomeDomain", "Library")]
	assert.Equal(t, backupfmt.FlagDirectory, dirRec.Type())
}

// TestMBDBIncremental: the phone decides from the host's Status.plist (2.4)
// and Manifest.mbdb: unchanged files are not sent again, removed files are
// removed from the flat folder, a forced full backup drops stale files.
func TestMBDBIncremental(t *testing.T) {
	cdir, dir := content(t), t.TempDir()
	cfg := backupagent.Config{ContentDir: cdir, WorkDir: t.TempDir(), MBDB: true}
	_, err := backup(t, cfg, backupOpts(dir))
	require.NoError(t, err)

	b := filepath.Join(cdir, "HomeDomain", "Library", "b.txt")
	require.NoError(t, os.WriteFile(b, []byte("second"), 0o644))
	res, err := backup(t, cfg, backupOpts(dir))
	require.NoError(t, err)
	assert.False(t, res.FullBackup)
	assert.Equal(t, 7, res.FilesReceived, "one new file + metadata")
	idB := backupfmt.FileID("HomeDomain", "Library/b.txt")
	assert.FileExists(t, filepath.Join(dir, udid, idB))

	require.NoError(t, os.Remove(b))
	res, err = backup(t, cfg, backupOpts(dir))
	require.NoError(t, err)
	assert.False(t, res.FullBackup)
	assert.NoFileExists(t, filepath.Join(dir, udid, idB), "removed on the phone → removed in the backup")
	assert.NotContains(t, mbdbRecords(t, dir), idB)

	// A forced full backup drops files the phone no longer has from the
	// flat folder (found by listing <UDID>).
	c := filepath.Join(cdir, "HomeDomain", "Library", "c.txt")
	require.NoError(t, os.WriteFile(c, []byte("third"), 0o644))
	_, err = backup(t, cfg, backupOpts(dir))
	require.NoError(t, err)
	idC := backupfmt.FileID("HomeDomain", "Library/c.txt")
	assert.FileExists(t, filepath.Join(dir, udid, idC))
	require.NoError(t, os.Remove(c))
	o := backupOpts(dir)
	o.Full = true
	res, err = backup(t, cfg, o)
	require.NoError(t, err)
	assert.True(t, res.FullBackup)
	assert.NoFileExists(t, filepath.Join(dir, udid, idC))
	assert.FileExists(t, filepath.Join(dir, udid, "Manifest.mbdb"), "metadata is not mistaken for a stale file")
	assert.FileExists(t, filepath.Join(dir, udid, "Info.plist"))

	// A Manifest.db-era Status (3.3) is not this phone's format: full backup.
	real, err := filepath.EvalSymlinks(filepath.Join(dir, udid))
	require.NoError(t, err)
	st, err := backupfmt.ReadStatus(filepath.Join(real, "Status.plist"))
	require.NoError(t, err)
	st.Version = backupfmt.StatusVersion
	require.NoError(t, os.Remove(filepath.Join(real, "Status.plist"))) // hard-linked: never write in place
	require.NoError(t, backupfmt.WriteStatus(filepath.Join(real, "Status.plist"), st))
	res, err = backup(t, cfg, backupOpts(dir))
	require.NoError(t, err)
	assert.True(t, res.FullBackup)
}

// TestMBDBRestore: an mbdb backup restores onto the iOS 9 phone and onto a
// Manifest.db-era phone (mbdb is still accepted by restore, §5.7).
func TestMBDBRestore(t *testing.T) {
	cdir, dir := content(t), t.TempDir()
	_, err := backup(t, backupagent.Config{ContentDir: cdir, WorkDir: t.TempDir(), MBDB: true}, backupOpts(dir))
	require.NoError(t, err)
	a := filepath.Join(cdir, "HomeDomain", "Library", "a.txt")
	for _, mbdb := range []bool{true, false} {
		require.NoError(t, os.WriteFile(a, []byte("changed"), 0o644))
		err := restore(t, backupagent.Config{ContentDir: cdir, WorkDir: t.TempDir(), MBDB: mbdb},
			mobilebackup2.RestoreOptions{Dir: dir, Target: udid})
		require.NoError(t, err, "MBDB phone %v", mbdb)
		b, err := os.ReadFile(a)
		require.NoError(t, err)
		assert.Equal(t, "hello", string(b), "MBDB phone %v", mbdb)
	}
}

// TestMBDBVerifyCatchesTruncation: the host checks every Manifest.mbdb file
// record against the disk; a file cut short in transit fails the backup
// and the previous one is kept.
func TestMBDBVerifyCatchesTruncation(t *testing.T) {
	cdir, dir := content(t), t.TempDir()
	cfg := backupagent.Config{ContentDir: cdir, WorkDir: t.TempDir(), MBDB: true}
	_, err := backup(t, cfg, backupOpts(dir))
	require.NoError(t, err)
	cfg.Faults.TruncateFile = 1
	o := backupOpts(dir)
	o.Full = true
	_, err = backup(t, cfg, o)
	var ve *mobilebackup2.VerifyError
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Problems, 1)
	assert.Equal(t, udid+"/"+backupfmt.FileID("HomeDomain", "Library/a.txt"), ve.Problems[0].Path)
	assert.Contains(t, ve.Problems[0].Problem, "Manifest.mbdb says 5")
	b, err := os.ReadFile(filepath.Join(dir, udid, backupfmt.FileID("HomeDomain", "Library/a.txt")))
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b), "the last good backup is untouched")
}

// TestDeviceFull: a phone out of storage ends a backup with 106 before any
// file moves and a restore with 106 before anything is copied or applied.
func TestDeviceFull(t *testing.T) {
	for _, mbdb := range []bool{false, true} {
		cdir, dir := content(t), t.TempDir()
		cfg := backupagent.Config{ContentDir: cdir, WorkDir: t.TempDir(), MBDB: mbdb}
		res, err := backup(t, cfg, backupOpts(dir))
		require.NoError(t, err)
		first := res.Version.ID

		full := cfg
		full.Faults.DeviceFull = true
		_, err = backup(t, full, backupOpts(dir))
		var de *mobilebackup2.DeviceError
		require.ErrorAs(t, err, &de)
		assert.Equal(t, int64(106), de.Code)
		assert.Contains(t, de.Description, "No space left on device")
		assert.Contains(t, mobilebackup2.Hint(err), "phone's own storage is full")

		a := filepath.Join(cdir, "HomeDomain", "Library", "a.txt")
		require.NoError(t, os.WriteFile(a, []byte("changed"), 0o644))
		err = restore(t, full, mobilebackup2.RestoreOptions{Dir: dir, Target: udid})
		require.ErrorAs(t, err, &de)
		assert.Equal(t, int64(106), de.Code)
		assert.Equal(t, "Insufficient free disk space on device to restore", de.Description)
		b, err := os.ReadFile(a)
		require.NoError(t, err)
		assert.Equal(t, "changed", string(b), "nothing restored")

		// The backup is as it was: one version, still current, no copy.
		vs, err := snapshot.List(dir, udid)
		require.NoError(t, err)
		require.Len(t, vs, 1)
		assert.Equal(t, first, vs[0].ID)
		assert.True(t, vs[0].Current)
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range entries {
			assert.NotContains(t, e.Name(), udid+"-", "no restore copy was made")
		}
	}
}
