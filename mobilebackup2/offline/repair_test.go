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

// fingerprint maps every path under dir to its content hash and mtime.
func fingerprint(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, rel := range listFiles(t, dir) {
		p := filepath.Join(dir, rel)
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		st, err := os.Stat(p)
		require.NoError(t, err)
		out[rel] = sha1hex(b) + st.ModTime().String()
	}
	return out
}

func TestRepairDamage(t *testing.T) {
	cases := []struct {
		name        string
		o           buildOpts
		apply       func(t *testing.T, b *Backup)
		wantDropped []string
		wantFixed   int
	}{
		{"clean", buildOpts{}, func(*testing.T, *Backup) {}, nil, 0},
		{"missing files", buildOpts{}, func(t *testing.T, b *Backup) {
			require.NoError(t, os.Remove(fileOf(t, b, appDom, f0)))
		}, []string{"missing:" + f0}, 0},
		{"truncated file and Status.plist", buildOpts{digests: true}, func(t *testing.T, b *Backup) {
			require.NoError(t, os.Truncate(fileOf(t, b, appDom, f1), 10))
			require.NoError(t, os.Truncate(filepath.Join(b.Dir, StatusPlist), 7))
		}, nil, 1},
		{"empty Manifest.plist", buildOpts{}, func(t *testing.T, b *Backup) {
			require.NoError(t, os.WriteFile(filepath.Join(b.Dir, ManifestPlist), nil, 0o644))
		}, nil, 0},
		{"missing Info.plist", buildOpts{}, func(t *testing.T, b *Backup) {
			require.NoError(t, os.Remove(filepath.Join(b.Dir, InfoPlist)))
		}, nil, 0},
		{"interrupted uploading", buildOpts{}, func(t *testing.T, b *Backup) {
			// content moved into Snapshot/ but never moved back; Status says uploading
			id := backupfmt.FileID(appDom, f0)
			require.NoError(t, os.MkdirAll(filepath.Join(b.Dir, SnapshotDir, id[:2]), 0o755))
			require.NoError(t, os.Rename(b.ContentPath(id), filepath.Join(b.Dir, SnapshotDir, id[:2], id)))
			s := *b.Status
			s.SnapshotState = backupfmt.SnapshotUploading
			require.NoError(t, backupfmt.WriteStatus(filepath.Join(b.Dir, StatusPlist), &s))
		}, nil, 0},
		{"encrypted missing and corrupt", buildOpts{password: testPassword}, func(t *testing.T, b *Backup) {
			require.NoError(t, os.Remove(fileOf(t, b, appDom, f0)))
			p := fileOf(t, b, appDom, f1)
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			data[len(data)-1] ^= 0x55
			require.NoError(t, os.WriteFile(p, data, 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(b.Dir, StatusPlist), nil, 0o644))
		}, []string{"missing:" + f0, "undecryptable:" + f1}, 0},
		{"mbdb missing", buildOpts{format: FormatMBDB}, func(t *testing.T, b *Backup) {
			require.NoError(t, os.Remove(fileOf(t, b, appDom, f0)))
			require.NoError(t, os.WriteFile(filepath.Join(b.Dir, ManifestPlist), nil, 0o644))
		}, []string{"missing:" + f0}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := buildBackup(t, t.TempDir(), tc.o)
			b, err := Open(dir, Options{Password: tc.o.password})
			require.NoError(t, err)
			tc.apply(t, b)
			require.NoError(t, b.Close())
			before := fingerprint(t, dir)

			out := filepath.Join(t.TempDir(), "repaired")
			rep, err := Repair(dir, out, RepairOptions{Options: Options{Password: tc.o.password}, Now: func() time.Time { return testNow }})
			require.NoError(t, err)
			assert.Equal(t, before, fingerprint(t, dir), "original untouched")
			var dropped []string
			for _, p := range rep.Dropped {
				dropped = append(dropped, string(p.Kind)+":"+p.Path)
			}
			assert.Equal(t, tc.wantDropped, dropped)
			assert.Len(t, rep.Fixed, tc.wantFixed)
			require.NotNil(t, rep.Verify)
			assert.Equal(t, ExitClean, rep.Verify.ExitCode(), "%v\n%v", rep.Verify.Problems, rep.Actions)
			assert.Equal(t, filepath.Join(out, testUDID), rep.Out)
			st, err := backupfmt.ReadStatus(filepath.Join(rep.Out, StatusPlist))
			require.NoError(t, err)
			assert.NoError(t, st.Check())
			assert.True(t, st.Finished())
			// every kept file is extractable with the same bytes as before
			x, err := Extract(rep.Out, t.TempDir(), ExtractOptions{Options: Options{Password: tc.o.password}})
			require.NoError(t, err)
			assert.Empty(t, x.Skipped)
			assert.EqualValues(t, 8-len(tc.wantDropped), x.Files)
		})
	}
}

func TestRepairSnapshotManifestWhenMoving(t *testing.T) {
	// A run that got to "moving": Snapshot/ holds the complete new manifest
	// and a new file not yet moved into place.
	root := t.TempDir()
	old := buildBackup(t, filepath.Join(root, "old"), buildOpts{nFiles: 2})
	newer := buildBackup(t, filepath.Join(root, "new"), buildOpts{nFiles: 3})
	snap := filepath.Join(old, SnapshotDir)
	require.NoError(t, os.Mkdir(snap, 0o755))
	for _, n := range []string{ManifestDB, ManifestPlist} {
		data, err := os.ReadFile(filepath.Join(newer, n))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(snap, n), data, 0o644))
	}
	id := backupfmt.FileID(appDom, "Documents/file002.txt")
	require.NoError(t, os.Mkdir(filepath.Join(snap, id[:2]), 0o755))
	data, err := os.ReadFile(filepath.Join(newer, id[:2], id))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(snap, id[:2], id), data, 0o644))
	s, err := backupfmt.ReadStatus(filepath.Join(old, StatusPlist))
	require.NoError(t, err)
	s.SnapshotState = backupfmt.SnapshotMoving
	require.NoError(t, backupfmt.WriteStatus(filepath.Join(old, StatusPlist), s))

	rep, err := Repair(old, filepath.Join(root, "out"), RepairOptions{})
	require.NoError(t, err)
	assert.Contains(t, rep.Actions, "manifest records taken from leftover Snapshot/")
	assert.Contains(t, rep.Actions, "1 files salvaged from the leftover Snapshot/")
	assert.Empty(t, rep.Dropped)
	assert.Equal(t, ExitClean, rep.Verify.ExitCode(), "%v", rep.Verify.Problems)
	assert.EqualValues(t, 6, rep.Verify.Files)
}

func TestRepairRefusals(t *testing.T) {
	dir := buildBackup(t, t.TempDir(), buildOpts{password: testPassword})
	_, err := Repair(dir, filepath.Join(dir, "inside"), RepairOptions{})
	assert.ErrorContains(t, err, "overlaps")
	_, err = Repair(dir, filepath.Dir(filepath.Dir(dir)), RepairOptions{})
	assert.ErrorContains(t, err, "overlaps")

	nonEmpty := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(nonEmpty, "x"), nil, 0o644))
	_, err = Repair(dir, nonEmpty, RepairOptions{})
	assert.ErrorContains(t, err, "not empty")

	_, err = Repair(dir, t.TempDir(), RepairOptions{Options: Options{Password: "bad"}})
	assert.ErrorIs(t, err, ErrWrongPassword)

	require.NoError(t, os.WriteFile(filepath.Join(dir, ManifestPlist), nil, 0o644))
	_, err = Repair(dir, t.TempDir(), RepairOptions{Options: Options{Password: testPassword}})
	assert.ErrorIs(t, err, ErrUnrepairable)
}

func TestRepairUsesOlderVersionMetadata(t *testing.T) {
	// Layout of our snapshot store: DIR/<UDID> → .ibackup/<UDID>/versions/<ID>/<UDID>.
	root := t.TempDir()
	vers := filepath.Join(root, ".ibackup", testUDID, "versions")
	v1 := buildBackup(t, filepath.Join(vers, "20261101T000000.000000000Z"), buildOpts{password: testPassword})
	v2 := buildBackup(t, filepath.Join(vers, "20261124T000000.000000000Z"), buildOpts{password: testPassword})
	// same keybag in both versions, as for one device and password
	for _, n := range []string{ManifestPlist, ManifestDB} {
		data, err := os.ReadFile(filepath.Join(v1, n))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(v2, n), data, 0o644))
	}
	require.NoError(t, os.Symlink(v2, filepath.Join(root, testUDID)))
	// the current version lost its Manifest.plist
	require.NoError(t, os.WriteFile(filepath.Join(v2, ManifestPlist), []byte{}, 0o644))
	before := fingerprint(t, v1)

	rep, err := Repair(filepath.Join(root, testUDID), filepath.Join(t.TempDir(), "out"), RepairOptions{Options: Options{Password: testPassword}})
	require.NoError(t, err)
	assert.Contains(t, rep.Actions, "Manifest.plist taken from older version 20261101T000000.000000000Z")
	assert.Equal(t, ExitClean, rep.Verify.ExitCode(), "%v", rep.Verify.Problems)
	assert.Equal(t, before, fingerprint(t, v1))
	assert.True(t, bytes.HasPrefix([]byte(rep.Out), []byte(filepath.Dir(rep.Out))))
}
