package mobilebackup2_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/mobilebackup2"
	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/offline"
)

// encPhone is a fake phone with a persistent encryption setting and cheap
// KDF rounds.
func encPhone(t *testing.T, files map[string]string, password string) backupagent.Config {
	t.Helper()
	content := t.TempDir()
	writeTree(t, content, files)
	enc, err := backupagent.NewEncryption(backupagent.EncryptionConfig{
		Path: filepath.Join(t.TempDir(), backupagent.EncryptionFile), Password: password, Iter: 3, DPIC: 5})
	require.NoError(t, err)
	return backupagent.Config{ContentDir: content, WorkDir: t.TempDir(), Encryption: enc,
		Lockdown: backupfmt.Lockdown{ProductVersion: "17.5.1"}}
}

// overMux runs fn on a handshaken client over the USB mux stack and
// waits for the agent.
func overMux(t *testing.T, cfg backupagent.Config, fn func(c *mobilebackup2.Client) error) error {
	t.Helper()
	c, _, done := muxSession(t, cfg)
	err := fn(c)
	require.NoError(t, done())
	return err
}

func TestEncryptionEndToEndOverUSBMux(t *testing.T) {
	ctx := context.Background()
	files := map[string]string{
		"HomeDomain/Library/SMS/sms.db":        "sms",
		"KeychainDomain/keychain-backup.plist": "secret keys",
		"MediaDomain/Media/DCIM/1.JPG":         string(make([]byte, 70<<10)),
	}
	cfgA := encPhone(t, files, "")
	dir := t.TempDir()
	change := func(cfg backupagent.Config, p mobilebackup2.PasswordChange) error {
		p.Target = testUDID
		return overMux(t, cfg, func(c *mobilebackup2.Client) error { return c.ChangePassword(ctx, p) })
	}
	backup := func(pw string) *mobilebackup2.Result {
		var res *mobilebackup2.Result
		require.NoError(t, overMux(t, cfgA, func(c *mobilebackup2.Client) error {
			o := opts(dir)
			o.Password = pw
			var err error
			res, err = c.Backup(ctx, o)
			return err
		}))
		return res
	}
	restore := func(cfg backupagent.Config, o mobilebackup2.RestoreOptions) error {
		o.Dir, o.Source, o.DeviceVersion, o.System = dir, testUDID, "17.5.1", true
		if o.Target == "" {
			o.Target = udidB
		}
		return overMux(t, cfg, func(c *mobilebackup2.Client) error {
			_, err := c.Restore(ctx, o)
			return err
		})
	}
	udidDir := filepath.Join(dir, testUDID)

	// Enable encryption, back up, verify with the password.
	require.NoError(t, change(cfgA, mobilebackup2.PasswordChange{New: "pw1"}))
	assert.True(t, cfgA.Encryption.WillEncrypt())
	res := backup("pw1")
	assert.Empty(t, res.Warnings)
	assert.Equal(t, 3, res.FilesVerified)
	mf, err := backupfmt.ReadManifest(filepath.Join(udidDir, "Manifest.plist"))
	require.NoError(t, err)
	require.True(t, mf.IsEncrypted)
	rep, err := offline.Verify(udidDir, offline.VerifyOptions{Options: offline.Options{Password: "pw1"}})
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
	assert.EqualValues(t, 3, rep.Checked)

	// Wrong password: refused before anything is sent; phone and backup unchanged.
	cfgB := encPhone(t, nil, "")
	before := treeSnapshot(t, dir)
	err = restore(cfgB, mobilebackup2.RestoreOptions{Password: "nope"})
	require.ErrorIs(t, err, mobilebackup2.ErrWrongPassword)
	assert.ErrorIs(t, err, mobilebackup2.ErrBackupUnusable)
	assert.Contains(t, mobilebackup2.Hint(err), "password is wrong")
	err = restore(cfgB, mobilebackup2.RestoreOptions{})
	require.ErrorIs(t, err, mobilebackup2.ErrPasswordRequired)
	// Forced past our check, the phone itself refuses with 207.
	err = restore(cfgB, mobilebackup2.RestoreOptions{Password: "nope", Force: true, Remove: true})
	require.ErrorIs(t, err, mobilebackup2.ErrWrongPassword)
	var de *mobilebackup2.DeviceError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, int64(mobilebackup2.CodePassword), de.Code)
	assert.Empty(t, contentOf(t, cfgB.ContentDir))
	assert.Equal(t, before, treeSnapshot(t, dir))

	// Restore with the password: phone B gets A's content (and A's backup
	// password, as a restored keychain does).
	require.NoError(t, restore(cfgB, mobilebackup2.RestoreOptions{Password: "pw1", Remove: true}))
	assert.Equal(t, contentOf(t, cfgA.ContentDir), contentOf(t, cfgB.ContentDir))
	assert.Equal(t, "pw1", cfgB.Encryption.Password())
	assert.Equal(t, before, treeSnapshot(t, dir), "restore must not change the backup")

	// Change the password (wrong old one refused), back up, restore with the new one.
	err = change(cfgA, mobilebackup2.PasswordChange{Old: "bad", New: "pw2"})
	require.ErrorIs(t, err, mobilebackup2.ErrWrongPassword)
	require.NoError(t, change(cfgA, mobilebackup2.PasswordChange{Old: "pw1", New: "pw2"}))
	writeTree(t, cfgA.ContentDir, map[string]string{"HomeDomain/Library/Notes/n": "note"})
	res = backup("pw2")
	assert.True(t, res.FullBackup, "a new password makes the next backup full (§6.5)")
	assert.Empty(t, res.Warnings)
	err = restore(cfgB, mobilebackup2.RestoreOptions{Password: "pw1"})
	require.ErrorIs(t, err, mobilebackup2.ErrWrongPassword)
	require.NoError(t, restore(cfgB, mobilebackup2.RestoreOptions{Password: "pw2", Remove: true}))
	assert.Equal(t, contentOf(t, cfgA.ContentDir), contentOf(t, cfgB.ContentDir))

	// Disable encryption: the next backup is plain again.
	err = change(cfgA, mobilebackup2.PasswordChange{Old: "pw1"})
	require.ErrorIs(t, err, mobilebackup2.ErrWrongPassword)
	require.NoError(t, change(cfgA, mobilebackup2.PasswordChange{Old: "pw2"}))
	assert.False(t, cfgA.Encryption.WillEncrypt())
	res = backup("")
	assert.True(t, res.FullBackup)
	assert.Empty(t, res.Warnings)
	assert.Equal(t, contentOf(t, cfgA.ContentDir), decode(t, udidDir))
	require.NoError(t, restore(cfgB, mobilebackup2.RestoreOptions{Remove: true}))
	assert.Equal(t, contentOf(t, cfgA.ContentDir), contentOf(t, cfgB.ContentDir))
}

// TestEncryptedBackupDamageFound: a damaged ciphertext file is found with
// the password (decrypted check) and, when its size breaks the AES blocks,
// without it; restore refuses the damaged backup.
func TestEncryptedBackupDamageFound(t *testing.T) {
	cfg := encPhone(t, map[string]string{"HomeDomain/a": "aaaa", "HomeDomain/b": "bbbb"}, "pw")
	dir := t.TempDir()
	o := opts(dir)
	o.Password = "pw"
	res, err, agentErr := backupOnce(t, cfg, o)
	require.NoError(t, err)
	require.NoError(t, agentErr)
	assert.Empty(t, res.Warnings)

	cur, err := filepath.EvalSymlinks(filepath.Join(dir, testUDID))
	require.NoError(t, err)
	id := backupfmt.FileID("HomeDomain", "a")
	p := filepath.Join(cur, id[:2], id)
	require.NoError(t, os.Chmod(p, 0o644))
	require.NoError(t, os.WriteFile(p, make([]byte, 16), 0o644)) // right size, garbage content
	_, err, _ = restoreOnce(t, cfg, mobilebackup2.RestoreOptions{Dir: dir, Target: testUDID, Password: "pw"})
	require.ErrorIs(t, err, mobilebackup2.ErrBackupUnusable)
	assert.Contains(t, err.Error(), "undecryptable")

	// Forced past our check, the phone's own check ("verifying backup
	// contents") refuses it and applies nothing.
	before := contentOf(t, cfg.ContentDir)
	require.NoError(t, os.WriteFile(filepath.Join(cfg.ContentDir, "HomeDomain/a"), []byte("changed"), 0o644))
	before["HomeDomain/a"] = "changed"
	_, err, _ = restoreOnce(t, cfg, mobilebackup2.RestoreOptions{Dir: dir, Target: testUDID, Password: "pw", Force: true, Remove: true})
	var de *mobilebackup2.DeviceError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, int64(mobilebackup2.CodeCorruptBackup), de.Code)
	assert.Equal(t, before, contentOf(t, cfg.ContentDir))
}

// BenchmarkEncryptedBackup measures full backups of an encrypting phone
// over loopback TCP, alternating with a plain phone, and reports
// encrypted/plain wall time and the encrypted throughput in MB/s. The host
// verifies with the password (every file decrypted), so the ratio holds
// the phone's encryption and the host's decryption.
func BenchmarkEncryptedBackup(b *testing.B) {
	content := b.TempDir()
	const files, size = 24, 1 << 20
	buf := make([]byte, size)
	for i := range files {
		_, _ = rand.Read(buf)
		p := filepath.Join(content, "MediaDomain", "Media", fmt.Sprintf("f%03d.bin", i))
		require.NoError(b, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(b, os.WriteFile(p, buf, 0o644))
	}
	enc, err := backupagent.NewEncryption(backupagent.EncryptionConfig{Password: "pw", Iter: 3, DPIC: 5})
	require.NoError(b, err)
	plain := backupagent.Config{ContentDir: content, WorkDir: b.TempDir(), NoDigest: true}
	crypt := plain
	crypt.Encryption = enc
	dirE, dirP := b.TempDir(), b.TempDir()
	run := func(cfg backupagent.Config, dir string) time.Duration {
		o := opts(dir)
		o.Full, o.Keep, o.Password = true, 1, "pw"
		start := time.Now()
		_, err, _ := backupOnce(b, cfg, o)
		require.NoError(b, err)
		return time.Since(start)
	}
	run(crypt, dirE)
	run(plain, dirP)
	var te, tp time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		te += run(crypt, dirE)
		tp += run(plain, dirP)
	}
	b.StopTimer()
	b.ReportMetric(float64(te)/float64(tp), "encrypted/plain")
	b.ReportMetric(float64(files*size)/1e6/(te.Seconds()/float64(b.N)), "MB/s")
}

// TestEncryptedRestoreLinkDrop: the link drops in the middle of an
// encrypted restore: clear error, phone and backup untouched.
func TestEncryptedRestoreLinkDrop(t *testing.T) {
	cfg := encPhone(t, map[string]string{"HomeDomain/a": "aaaa", "HomeDomain/b": "bbbb", "HomeDomain/c": "cccc"}, "pw")
	dir := t.TempDir()
	o := opts(dir)
	o.Password = "pw"
	_, err, agentErr := backupOnce(t, cfg, o)
	require.NoError(t, err)
	require.NoError(t, agentErr)
	writeTree(t, cfg.ContentDir, map[string]string{"HomeDomain/a": "changed"})
	phone, backup := contentOf(t, cfg.ContentDir), treeSnapshot(t, dir)
	bad := cfg
	bad.Faults.DropMidFile = 2
	_, err, _ = restoreOnce(t, bad, mobilebackup2.RestoreOptions{Dir: dir, Target: testUDID, Password: "pw", Remove: true})
	require.ErrorIs(t, err, mobilebackup2.ErrDisconnected)
	assert.Equal(t, phone, contentOf(t, cfg.ContentDir))
	assert.Equal(t, backup, treeSnapshot(t, dir))
}
