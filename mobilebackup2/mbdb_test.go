package mobilebackup2_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/mobilebackup2"
	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
)

// ios9Phone is an iOS 9 phone: Manifest.mbdb backups with a flat layout
// (§5.7); with a password its keybag has no DPWT/DPIC/DPSL (§6.1).
func ios9Phone(t *testing.T, files map[string]string, password string) backupagent.Config {
	t.Helper()
	content := t.TempDir()
	writeTree(t, content, files)
	cfg := backupagent.Config{ContentDir: content, WorkDir: t.TempDir(), MBDB: true, DLMajor: 300,
		Lockdown: backupfmt.Lockdown{ProductVersion: "9.3.5"}}
	if password != "" {
		enc, err := backupagent.NewEncryption(backupagent.EncryptionConfig{Password: password, Iter: 3, NoDP: true})
		require.NoError(t, err)
		cfg.Encryption = enc
	}
	return cfg
}

// opts9 are backup options for the iOS 9 phone (Info.plist Product
// Version matches Manifest.plist's Lockdown).
func opts9(dir string) mobilebackup2.BackupOptions {
	o := opts(dir)
	o.Info.Values["ProductVersion"] = "9.3.5"
	o.Info.Values["ProductType"] = "iPhone8,1"
	return o
}

// TestMBDBBackupVerified: every Manifest.mbdb file record is checked
// against the disk; a wrong digest fails the run and keeps the last good
// version.
func TestMBDBBackupVerified(t *testing.T) {
	cfg := ios9Phone(t, map[string]string{"HomeDomain/Library/a": "aaaa", "MediaDomain/b": "bbbbbb"}, "")
	dir := t.TempDir()
	res, err, agentErr := backupOnce(t, cfg, opts9(dir))
	require.NoError(t, err)
	require.NoError(t, agentErr)
	assert.Equal(t, 2, res.FilesVerified)
	assert.Empty(t, res.Warnings)
	assert.Equal(t, map[string]string{"HomeDomain/Library/a": "aaaa", "MediaDomain/b": "bbbbbb"},
		decodeMBDB(t, filepath.Join(dir, testUDID)))

	cfg.Faults.WrongDigestFile = 1
	o := opts9(dir)
	o.Full = true
	_, err, agentErr = backupOnce(t, cfg, o)
	require.NoError(t, agentErr)
	var ve *mobilebackup2.VerifyError
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Problems, 1)
	assert.Contains(t, ve.Problems[0].Problem, "Manifest.mbdb says")
	assert.NotContains(t, ve.Problems[0].Path[len(testUDID)+1:], "/", "flat layout path")
	assert.Len(t, verifyRecord(t, res.Version, testUDID), 0, "the last good version still verifies")
}

// TestMBDBEncryptedVerified: an encrypted iOS 9 backup is checked
// decrypted with the password, by stored sizes without it, and damage to
// a flat content file is named by its path.
func TestMBDBEncryptedVerified(t *testing.T) {
	cfg := ios9Phone(t, map[string]string{"HomeDomain/a": "aaaa", "HomeDomain/b": "bbbb"}, "pw")
	dir := t.TempDir()
	o := opts9(dir)
	o.Password = "pw"
	res, err, agentErr := backupOnce(t, cfg, o)
	require.NoError(t, err)
	require.NoError(t, agentErr)
	assert.Empty(t, res.Warnings)
	assert.Equal(t, 2, res.FilesVerified)
	cur, err := filepath.EvalSymlinks(filepath.Join(dir, testUDID))
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(cur, "Manifest.mbdb"))
	mf, err := backupfmt.ReadManifest(filepath.Join(cur, "Manifest.plist"))
	require.NoError(t, err)
	assert.True(t, mf.IsEncrypted)
	assert.Empty(t, mf.ManifestKey, "iOS 9 keeps the manifest plain (§6.3)")

	res, err, _ = backupOnce(t, cfg, opts9(dir))
	require.NoError(t, err)
	assert.Contains(t, res.Warnings, "backup is encrypted and no password was given: only the stored sizes were checked, not the contents")
	assert.Equal(t, 2, res.FilesVerified)

	// Garbage of the right size in the current version: the next
	// incremental links it unchanged and the password check finds it.
	cur, err = filepath.EvalSymlinks(filepath.Join(dir, testUDID))
	require.NoError(t, err)
	id := backupfmt.FileID("HomeDomain", "a")
	p := filepath.Join(cur, id)
	require.NoError(t, os.Remove(p))
	require.NoError(t, os.WriteFile(p, make([]byte, 16), 0o644))
	_, err, _ = backupOnce(t, cfg, o)
	var ve *mobilebackup2.VerifyError
	require.ErrorAs(t, err, &ve)
	require.NotEmpty(t, ve.Problems)
	assert.Equal(t, testUDID+"/"+id, ve.Problems[0].Path)
	assert.Equal(t, "HomeDomain", ve.Problems[0].Domain)
}

// decodeMBDB returns "<Domain>/<rel>" → content of every file record of an
// unencrypted mbdb-era backup folder.
func decodeMBDB(t *testing.T, udidDir string) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(udidDir, "Manifest.mbdb"))
	require.NoError(t, err)
	defer f.Close()
	r, err := backupfmt.NewMBDBReader(f)
	require.NoError(t, err)
	out := map[string]string{}
	for {
		rec, err := r.Next()
		if err != nil {
			break
		}
		if rec.Type() != backupfmt.FlagFile {
			continue
		}
		b, err := os.ReadFile(filepath.Join(udidDir, rec.FileID))
		require.NoError(t, err)
		out[rec.Domain+"/"+rec.RelativePath] = string(b)
	}
	return out
}
