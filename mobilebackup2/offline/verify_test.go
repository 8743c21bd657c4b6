package offline

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testPassword = "correct horse"

func TestVerifyCleanBackups(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    buildOpts
	}{
		{"plain", buildOpts{}},
		{"plain digests", buildOpts{digests: true}},
		{"encrypted", buildOpts{password: testPassword, digests: true}},
		{"mbdb", buildOpts{format: FormatMBDB, digests: true}},
		{"mbdb encrypted", buildOpts{format: FormatMBDB, password: testPassword}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := buildBackup(t, t.TempDir(), tc.o)
			before := listFiles(t, dir)
			rep, err := Verify(filepath.Dir(dir), VerifyOptions{Options: Options{Password: tc.o.password}})
			require.NoError(t, err)
			assert.Empty(t, kinds(rep))
			assert.Equal(t, ExitClean, rep.ExitCode(), rep.Summary())
			assert.EqualValues(t, 8, rep.Files)
			assert.EqualValues(t, 5, rep.Dirs)
			assert.EqualValues(t, 1, rep.Symlinks)
			assert.EqualValues(t, 8, rep.Checked)
			assert.Equal(t, tc.o.password != "", rep.Encrypted)
			assert.Contains(t, rep.Summary(), ": OK")
			assert.Equal(t, before, listFiles(t, dir), "verify writes nothing into the backup")
		})
	}
}

func TestVerifyPasswordErrors(t *testing.T) {
	dir := buildBackup(t, t.TempDir(), buildOpts{password: testPassword})
	rep, err := Verify(dir, VerifyOptions{})
	assert.ErrorIs(t, err, ErrPasswordRequired)
	assert.Equal(t, ExitUnreadable, rep.ExitCode())
	rep, err = Verify(dir, VerifyOptions{Options: Options{Password: "wrong"}})
	assert.ErrorIs(t, err, ErrWrongPassword)
	assert.Equal(t, ExitUnreadable, rep.ExitCode())
	assert.Contains(t, rep.Summary(), "wrong backup password")
}

func TestVerifyUnreadable(t *testing.T) {
	rep, err := Verify(t.TempDir(), VerifyOptions{})
	assert.ErrorIs(t, err, ErrNotBackup)
	assert.Equal(t, ExitUnreadable, rep.ExitCode())

	dir := buildBackup(t, t.TempDir(), buildOpts{})
	require.NoError(t, os.WriteFile(filepath.Join(dir, ManifestDB), []byte("garbage garbage garbage"), 0o644))
	rep, err = Verify(dir, VerifyOptions{})
	assert.ErrorIs(t, err, backupfmt.ErrNotManifestDB)
	assert.Equal(t, ExitUnreadable, rep.ExitCode())
}

// damage applies one crafted defect to a built backup.
type damage struct {
	name  string
	o     buildOpts
	apply func(t *testing.T, b *Backup)
	want  []string
}

func fileOf(t *testing.T, b *Backup, domain, path string) string {
	t.Helper()
	return b.ContentPath(backupfmt.FileID(domain, path))
}

const (
	appDom = "AppDomain-com.example.app"
	f0     = "Documents/file000.txt"
	f1     = "Documents/file001.txt"
)

func TestVerifyDamage(t *testing.T) {
	cases := []damage{
		{"missing file", buildOpts{}, func(t *testing.T, b *Backup) {
			require.NoError(t, os.Remove(fileOf(t, b, appDom, f0)))
		}, []string{"missing:" + f0}},
		{"truncated file", buildOpts{}, func(t *testing.T, b *Backup) {
			require.NoError(t, os.Truncate(fileOf(t, b, appDom, f1), 10))
		}, []string{"truncated:" + f1}},
		{"grown file", buildOpts{}, func(t *testing.T, b *Backup) {
			require.NoError(t, os.WriteFile(fileOf(t, b, appDom, f1), make([]byte, 1000), 0o644))
		}, []string{"size-mismatch:" + f1}},
		{"bit flip with digest", buildOpts{digests: true}, func(t *testing.T, b *Backup) {
			p := fileOf(t, b, appDom, f1)
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			data[3] ^= 0xff
			require.NoError(t, os.WriteFile(p, data, 0o644))
		}, []string{"digest-mismatch:" + f1}},
		{"orphan", buildOpts{}, func(t *testing.T, b *Backup) {
			require.NoError(t, os.WriteFile(b.ContentPath(backupfmt.FileID("X", "y")), []byte("o"), 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(b.Dir, "00", "junk"), []byte("o"), 0o644))
		}, []string{"orphan:00/junk", "orphan:" + backupfmt.FileID("X", "y")[:2] + "/" + backupfmt.FileID("X", "y")}},
		{"interrupted", buildOpts{}, func(t *testing.T, b *Backup) {
			s := *b.Status
			s.SnapshotState = backupfmt.SnapshotUploading
			require.NoError(t, backupfmt.WriteStatus(filepath.Join(b.Dir, StatusPlist), &s))
			require.NoError(t, os.MkdirAll(filepath.Join(b.Dir, SnapshotDir, "ab"), 0o755))
		}, []string{"snapshot-leftover:Snapshot", "unfinished-snapshot:Status.plist"}},
		{"truncated Status.plist", buildOpts{}, func(t *testing.T, b *Backup) {
			require.NoError(t, os.Truncate(filepath.Join(b.Dir, StatusPlist), 20))
		}, []string{"metadata:Status.plist"}},
		{"empty Manifest.plist", buildOpts{}, func(t *testing.T, b *Backup) {
			require.NoError(t, os.WriteFile(filepath.Join(b.Dir, ManifestPlist), nil, 0o644))
		}, []string{"metadata:Manifest.plist"}},
		{"missing Info.plist", buildOpts{}, func(t *testing.T, b *Backup) {
			require.NoError(t, os.Remove(filepath.Join(b.Dir, InfoPlist)))
		}, []string{"metadata:Info.plist"}},
		{"inconsistent versions", buildOpts{}, func(t *testing.T, b *Backup) {
			in := *b.Info
			in.ProductVersion = "15.0"
			require.NoError(t, backupfmt.WriteInfo(filepath.Join(b.Dir, InfoPlist), &in))
		}, []string{"inconsistent:Info.plist"}},
		{"encrypted truncated", buildOpts{password: testPassword}, func(t *testing.T, b *Backup) {
			require.NoError(t, os.Truncate(fileOf(t, b, appDom, f1), 50))
		}, []string{"truncated:" + f1}},
		{"encrypted bad padding", buildOpts{password: testPassword}, func(t *testing.T, b *Backup) {
			p := fileOf(t, b, appDom, f1)
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			data[len(data)-1] ^= 0x55
			require.NoError(t, os.WriteFile(p, data, 0o644))
		}, []string{"undecryptable:" + f1}},
		{"encrypted extra block", buildOpts{password: testPassword}, func(t *testing.T, b *Backup) {
			// a whole extra plaintext block: the file changed after the size was recorded
			p := fileOf(t, b, appDom, f1)
			key, err := b.FileKey(mustLookup(t, b, appDom, f1))
			require.NoError(t, err)
			rc, err := b.OpenContent(mustLookup(t, b, appDom, f1))
			require.NoError(t, err)
			plain := readAll(t, rc)
			enc := encrypt(t, key, append(plain, make([]byte, 16)...))
			require.NoError(t, os.WriteFile(p, enc, 0o644))
		}, []string{"size-mismatch:" + f1}},
		{"mbdb missing", buildOpts{format: FormatMBDB}, func(t *testing.T, b *Backup) {
			require.NoError(t, os.Remove(fileOf(t, b, appDom, f0)))
		}, []string{"missing:" + f0}},
		{"mbdb truncated manifest", buildOpts{format: FormatMBDB}, func(t *testing.T, b *Backup) {
			p := filepath.Join(b.Dir, ManifestMBDB)
			st, err := os.Stat(p)
			require.NoError(t, err)
			require.NoError(t, os.Truncate(p, st.Size()-5))
		}, []string{"manifest:Manifest.mbdb", "orphan:" + backupfmt.FileID("CameraRollDomain", "Media/DCIM/IMG_0001.JPG")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := buildBackup(t, t.TempDir(), tc.o)
			b, err := Open(dir, Options{Password: tc.o.password})
			require.NoError(t, err)
			tc.apply(t, b)
			require.NoError(t, b.Close())
			rep, err := Verify(dir, VerifyOptions{Options: Options{Password: tc.o.password}})
			require.NoError(t, err)
			assert.Equal(t, tc.want, kinds(rep))
			assert.Equal(t, ExitProblems, rep.ExitCode())
			assert.Contains(t, rep.Summary(), "problems")
		})
	}
}

// mapRecord is a HashRecord for tests.
type mapRecord map[string][2]string

func (m mapRecord) Sum(rel string) (int64, string, bool) {
	v, ok := m[rel]
	if !ok {
		return 0, "", false
	}
	var n int64
	for _, c := range v[0] {
		n = n*10 + int64(c-'0')
	}
	return n, v[1], true
}

func TestVerifyHashRecord(t *testing.T) {
	dir := buildBackup(t, t.TempDir(), buildOpts{})
	id := backupfmt.FileID(appDom, f1)
	rel := id[:2] + "/" + id
	data, err := os.ReadFile(filepath.Join(dir, rel))
	require.NoError(t, err)
	hr := mapRecord{rel: {itoa(len(data)), sha1hex(data)}}
	rep, err := Verify(dir, VerifyOptions{HashRecord: hr})
	require.NoError(t, err)
	assert.True(t, rep.UsedHashRecord)
	assert.Empty(t, kinds(rep))

	// same size, one byte flipped, no digest in the manifest: only the record catches it
	data[0] ^= 1
	require.NoError(t, os.WriteFile(filepath.Join(dir, rel), data, 0o644))
	rep, err = Verify(dir, VerifyOptions{HashRecord: hr})
	require.NoError(t, err)
	assert.Equal(t, []string{"checksum-mismatch:" + f1}, kinds(rep))
}

// TestVerifyIOS10EncryptedPlainManifest: iOS 10.0–10.1 encrypted the files
// but not Manifest.db, and had no ManifestKey (format §6.3).
func TestVerifyIOS10EncryptedPlainManifest(t *testing.T) {
	dir := buildBackup(t, t.TempDir(), buildOpts{password: testPassword})
	b, err := Open(dir, Options{Password: testPassword})
	require.NoError(t, err)
	plain, err := os.ReadFile(b.dbTemp)
	require.NoError(t, err)
	require.NoError(t, b.Close())
	require.NoError(t, os.WriteFile(filepath.Join(dir, ManifestDB), plain, 0o644))
	mf, err := backupfmt.ReadManifest(filepath.Join(dir, ManifestPlist))
	require.NoError(t, err)
	mf.ManifestKey = nil
	require.NoError(t, backupfmt.WriteManifest(filepath.Join(dir, ManifestPlist), mf))

	rep, err := Verify(dir, VerifyOptions{Options: Options{Password: testPassword}})
	require.NoError(t, err)
	assert.Equal(t, ExitClean, rep.ExitCode(), "%v", rep.Problems)
	assert.True(t, rep.Encrypted)
	assert.EqualValues(t, 8, rep.Checked)
}
