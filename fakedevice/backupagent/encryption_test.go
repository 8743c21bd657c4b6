package backupagent_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/mobilebackup2"
	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/keybag"
	"github.com/ibackup/ibackup/mobilebackup2/offline"
)

// fastKDF keeps PBKDF2 cheap in tests (real phones: 10 000 / 10 000 000).
func fastKDF(path string) backupagent.EncryptionConfig {
	return backupagent.EncryptionConfig{Path: path, Iter: 2, DPIC: 3}
}

// changePW runs one ChangePassword session.
func changePW(t *testing.T, cfg backupagent.Config, p mobilebackup2.PasswordChange) error {
	t.Helper()
	c, done := start(t, cfg)
	_, err := c.Handshake(context.Background())
	require.NoError(t, err)
	p.Target = udid
	err = c.ChangePassword(context.Background(), p)
	c.Close()
	require.NoError(t, <-done)
	return err
}

func TestChangePasswordRules(t *testing.T) {
	state := filepath.Join(t.TempDir(), backupagent.EncryptionFile)
	var changes []string
	ec := fastKDF(state)
	ec.OnChange = func(on bool, pw string) { changes = append(changes, pw) }
	enc, err := backupagent.NewEncryption(ec)
	require.NoError(t, err)
	confirm := true
	cfg := backupagent.Config{ContentDir: content(t), Encryption: enc,
		ConfirmPasscode: func(context.Context) bool { return confirm }}

	assert.ErrorIs(t, changePW(t, cfg, mobilebackup2.PasswordChange{Old: "x"}), mobilebackup2.ErrNotEncrypted)
	require.NoError(t, changePW(t, cfg, mobilebackup2.PasswordChange{New: "one"}))
	assert.True(t, enc.WillEncrypt())
	err = changePW(t, cfg, mobilebackup2.PasswordChange{New: "two"})
	assert.ErrorIs(t, err, mobilebackup2.ErrAlreadyEncrypted)

	// Wrong old password: 207, nothing changes (§6.5, pymobiledevice3 #721).
	err = changePW(t, cfg, mobilebackup2.PasswordChange{Old: "bad", New: "two"})
	require.ErrorIs(t, err, mobilebackup2.ErrWrongPassword)
	var de *mobilebackup2.DeviceError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, int64(207), de.Code)
	assert.Contains(t, mobilebackup2.Hint(err), "password is wrong")
	assert.ErrorIs(t, changePW(t, cfg, mobilebackup2.PasswordChange{Old: "bad"}), mobilebackup2.ErrWrongPassword)
	assert.Equal(t, "one", enc.Password())

	// The passcode prompt nobody answers: 208, nothing changes.
	confirm = false
	err = changePW(t, cfg, mobilebackup2.PasswordChange{Old: "one", New: "two"})
	require.ErrorIs(t, err, mobilebackup2.ErrPasscodeRequired)
	assert.Equal(t, "one", enc.Password())
	confirm = true

	require.NoError(t, changePW(t, cfg, mobilebackup2.PasswordChange{Old: "one", New: "two"}))
	// The state survives a restart of the phone.
	again, err := backupagent.NewEncryption(fastKDF(state))
	require.NoError(t, err)
	assert.Equal(t, "two", again.Password())

	require.NoError(t, changePW(t, cfg, mobilebackup2.PasswordChange{Old: "two"}))
	assert.False(t, enc.WillEncrypt())
	again, err = backupagent.NewEncryption(fastKDF(state))
	require.NoError(t, err)
	assert.False(t, again.WillEncrypt())
	assert.Equal(t, []string{"one", "two", ""}, changes)

	// Host-side refusal when WillEncrypt is known: nothing is sent.
	on := true
	err = (&mobilebackup2.Client{}).ChangePassword(context.Background(), mobilebackup2.PasswordChange{New: "x", WillEncrypt: &on})
	assert.ErrorIs(t, err, mobilebackup2.ErrNotHandshaken)
}

// encryptedBackup makes one backup of a phone with password pw on iOS
// version pv and returns the backup folder.
func encryptedBackup(t *testing.T, pv string, files map[string]string) (udidDir string, cfg backupagent.Config) {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(c), 0o644))
	}
	ec := fastKDF("")
	ec.Password = "secret"
	ec.NoDP = !backupagent.EncryptsManifest(pv)
	enc, err := backupagent.NewEncryption(ec)
	require.NoError(t, err)
	cfg = backupagent.Config{ContentDir: dir, Encryption: enc, Lockdown: backupfmt.Lockdown{ProductVersion: pv}}
	out := t.TempDir()
	c, done := start(t, cfg)
	_, err = c.Handshake(context.Background())
	require.NoError(t, err)
	o := backupOpts(out)
	o.Info.Values["ProductVersion"] = pv
	o.Password = "secret"
	res, err := c.Backup(context.Background(), o)
	require.NoError(t, err)
	assert.Empty(t, res.Warnings)
	c.Close()
	require.NoError(t, <-done)
	return filepath.Join(out, udid), cfg
}

func TestEncryptedBackupFormat(t *testing.T) {
	files := map[string]string{"HomeDomain/Library/a.txt": "hello", "HomeDomain/empty": "",
		"MediaDomain/b": string(bytes.Repeat([]byte("x"), 40000))}
	for _, tc := range []struct {
		pv        string
		dp, plain bool
	}{{pv: "17.5", dp: true}, {pv: "10.1", dp: false, plain: true}} {
		t.Run(tc.pv, func(t *testing.T) {
			u, _ := encryptedBackup(t, tc.pv, files)
			mf, err := backupfmt.ReadManifest(filepath.Join(u, "Manifest.plist"))
			require.NoError(t, err)
			assert.True(t, mf.IsEncrypted)
			kb, err := keybag.Parse(mf.BackupKeyBag)
			require.NoError(t, err)
			assert.Equal(t, tc.dp, kb.HasDP, "iOS 10.2+ keybags have DPSL/DPIC (§6.1)")
			assert.EqualValues(t, keybag.TypeBackup, kb.Type)
			db, err := os.ReadFile(filepath.Join(u, "Manifest.db"))
			require.NoError(t, err)
			assert.Equal(t, tc.plain, bytes.HasPrefix(db, []byte("SQLite format 3")), "Manifest.db encrypted from iOS 10.2 (§6.3)")
			assert.Equal(t, tc.plain, len(mf.ManifestKey) == 0)

			// Content is ciphertext; the offline tools decrypt it.
			id := backupfmt.FileID("HomeDomain", "Library/a.txt")
			stored, err := os.ReadFile(filepath.Join(u, id[:2], id))
			require.NoError(t, err)
			assert.Len(t, stored, 16)
			assert.NotContains(t, string(stored), "hello")
			rep, err := offline.Verify(u, offline.VerifyOptions{Options: offline.Options{Password: "secret"}})
			require.NoError(t, err)
			assert.Empty(t, rep.Problems)
			assert.True(t, rep.Encrypted)
			assert.EqualValues(t, 3, rep.Checked)
			_, err = offline.Verify(u, offline.VerifyOptions{Options: offline.Options{Password: "nope"}})
			assert.ErrorIs(t, err, offline.ErrWrongPassword)
			out := t.TempDir()
			_, err = offline.Extract(u, out, offline.ExtractOptions{Options: offline.Options{Password: "secret"}})
			require.NoError(t, err)
			for p, c := range files {
				b, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(p)))
				require.NoError(t, err)
				assert.Equal(t, c, string(b), p)
			}
		})
	}
}

func TestEncryptedIncremental(t *testing.T) {
	files := map[string]string{"HomeDomain/a": "aaa", "HomeDomain/b": "bbb"}
	u, cfg := encryptedBackup(t, "17.5", files)
	backup := func(pw string) *mobilebackup2.Result {
		c, done := start(t, cfg)
		_, err := c.Handshake(context.Background())
		require.NoError(t, err)
		o := backupOpts(filepath.Dir(u))
		o.Password = pw
		o.Info.Values["ProductVersion"] = "17.5"
		res, err := c.Backup(context.Background(), o)
		require.NoError(t, err)
		c.Close()
		require.NoError(t, <-done)
		return res
	}
	require.NoError(t, os.WriteFile(filepath.Join(cfg.ContentDir, "HomeDomain/c"), []byte("new"), 0o644))
	res := backup("secret")
	assert.False(t, res.FullBackup)
	// metaFiles: Status.plist ×4, Manifest.plist, Manifest.db (§4.3).
	const metaFiles = 6
	assert.Equal(t, 1+metaFiles, res.FilesReceived, "only the new file; unchanged files keep their keys")
	assert.Equal(t, 3, res.FilesVerified)

	// A new password makes the next backup full (§6.5).
	require.NoError(t, changePW(t, cfg, mobilebackup2.PasswordChange{Old: "secret", New: "other"}))
	res = backup("other")
	assert.True(t, res.FullBackup)
	assert.Equal(t, 3+metaFiles, res.FilesReceived)
	_, err := offline.Verify(u, offline.VerifyOptions{Options: offline.Options{Password: "secret"}})
	assert.ErrorIs(t, err, offline.ErrWrongPassword)

	// Without the password only sizes are checked, with a warning; a wrong
	// one is a warning too (the phone's backup is fine).
	res = backup("")
	assert.Contains(t, res.Warnings[0], "no password")
	res = backup("wrong")
	assert.Contains(t, res.Warnings[0], "does not unlock")
}

// TestEncryptedTruncationFound: a file the phone sent short is caught by the
// host's verification of an encrypted backup, with the password (decrypted
// size) and without it (not whole AES blocks); the previous backup stays.
func TestEncryptedTruncationFound(t *testing.T) {
	for _, pw := range []string{"secret", ""} {
		ec := fastKDF("")
		ec.Password = "secret"
		enc, err := backupagent.NewEncryption(ec)
		require.NoError(t, err)
		cfg := backupagent.Config{ContentDir: content(t), Encryption: enc, Faults: backupagent.Faults{TruncateFile: 1}}
		c, done := start(t, cfg)
		_, err = c.Handshake(context.Background())
		require.NoError(t, err)
		o := backupOpts(t.TempDir())
		o.Password = pw
		_, err = c.Backup(context.Background(), o)
		var ve *mobilebackup2.VerifyError
		require.ErrorAs(t, err, &ve, "password %q", pw)
		c.Close()
		require.NoError(t, <-done)
	}
}

// TestChangePasswordNeedsState: without a shared Encryption nothing could
// keep a new password, so the phone refuses instead of forgetting it.
func TestChangePasswordNeedsState(t *testing.T) {
	err := changePW(t, backupagent.Config{ContentDir: content(t)}, mobilebackup2.PasswordChange{New: "x"})
	var de *mobilebackup2.DeviceError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, int64(1), de.Code)
}

func TestEncryptsManifest(t *testing.T) {
	for v, want := range map[string]bool{"": true, "10.1.1": false, "10.2": true, "9.3.5": false, "17.5.1": true, "11": true} {
		assert.Equal(t, want, backupagent.EncryptsManifest(v), v)
	}
}

// FuzzEncryptionState: any state file content loads or fails cleanly, and
// a loaded state that says encrypted yields usable keys.
func FuzzEncryptionState(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("bplist00"))
	f.Add([]byte(`<plist><dict><key>Password</key><string>x</string><key>Keybag</key><data>AAAA</data></dict></plist>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), backupagent.EncryptionFile)
		require.NoError(t, os.WriteFile(p, b, 0o600))
		e, err := backupagent.NewEncryption(backupagent.EncryptionConfig{Path: p, Iter: 1, DPIC: 1})
		if err != nil {
			return
		}
		assert.Equal(t, e.Password() != "", e.WillEncrypt())
	})
}
