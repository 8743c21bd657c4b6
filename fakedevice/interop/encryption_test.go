package interop

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// noChangePassword is how a fake backup agent without a place to keep the
// backup password answers ChangePassword (fakedevice/backupagent); the
// tool prints it as "ErrorCode 1: <description>". The encryption tests
// skip on it, naming the feature, and run once the phone has one.
const noChangePassword = "Unsupported request ChangePassword"

// skipIfUnbuilt skips t when out shows that the fake device lacks feature.
func skipIfUnbuilt(t *testing.T, out, marker, feature string) {
	t.Helper()
	if strings.Contains(out, marker) {
		t.Skipf("fake device does not implement %s yet (device said %q)", feature, marker)
	}
}

// willEncrypt reads com.apple.mobile.backup WillEncrypt with ideviceinfo.
func (r *rig) willEncrypt(udid string) string {
	r.t.Helper()
	return strings.TrimSpace(r.must("ideviceinfo", "-u", udid, "-q", "com.apple.mobile.backup", "-k", "WillEncrypt"))
}

// TestIdevicebackup2Encryption: encryption on, an encrypted backup that
// ibackup verifies and extracts with the password, an encrypted restore,
// changepw, a backup under the new password, and encryption off
// (libimobiledevice-client-needs.md §4.1, §4.6; issue 10 item 5).
func TestIdevicebackup2Encryption(t *testing.T) {
	t.Parallel()
	r := newRig(t, phoneSpec{Seed: 100, Files: 40})
	u, dir := r.udids[0], r.backupDir("backups")
	const pw1, pw2 = "correct horse", "battery staple"

	// Host-side refusals need no device feature.
	res := r.run("idevicebackup2", "encryption", "off", pw1)
	assert.Contains(t, res.out, "Backup encryption is not enabled", res.out)
	res = r.run("idevicebackup2", "changepw", pw1, pw2)
	assert.Contains(t, res.out, "not enabled so can't change password", res.out)

	res = r.run("idevicebackup2", "encryption", "on", pw1)
	skipIfUnbuilt(t, res.out, noChangePassword, "backup encryption (mobilebackup2 ChangePassword)")
	require.Equal(t, 0, res.code, res.out)
	require.Contains(t, res.out, "Backup encryption has been enabled successfully.")
	assert.Equal(t, "true", r.willEncrypt(u))
	res = r.run("idevicebackup2", "encryption", "on", pw1)
	assert.Contains(t, res.out, "Backup encryption is already enabled", res.out)

	// An encrypted full backup, readable only with the password.
	r.mustContain("Backup Successful.", "idevicebackup2", "backup", "--full", dir)
	backup := readTree(t, r.files(u))
	assert.Equal(t, true, readPlist(t, filepath.Join(dir, u, "Manifest.plist"))["IsEncrypted"])
	r.mustContain("OK", "ibackup", "verify", "--password", pw1, dir)
	assertTree(t, backup, r.extract(dir, "--password", pw1), "encrypted backup vs phone")
	bad := r.run("ibackup", "verify", "--password", pw2, dir)
	assert.NotEqual(t, 0, bad.code, "verify with a wrong password:\n%s", bad.out)

	// Restore: the host wants the password, the phone checks it.
	res = r.run("idevicebackup2", "restore", dir)
	assert.Contains(t, res.out, "a backup password is required to restore an encrypted backup", res.out)
	change(t, r.files(u), 1)
	current := readTree(t, r.files(u))
	res = r.run("idevicebackup2", "restore", "--password", pw2, dir)
	assert.NotEqual(t, 0, res.code, res.out)
	assert.Contains(t, res.out, "Restore Failed", res.out)
	assertTree(t, current, readTree(t, r.files(u)), "a refused restore leaves the phone alone")
	r.mustContain("Restore Successful.", "idevicebackup2", "restore", "--system", "--remove", "--password", pw1, dir)
	assertTree(t, backup, readTree(t, r.files(u)), "phone after encrypted restore")

	// changepw: the next backup is under the new password.
	r.mustContain("Backup encryption password has been changed successfully.", "idevicebackup2", "changepw", pw1, pw2)
	assert.Equal(t, "true", r.willEncrypt(u))
	change(t, r.files(u), 2)
	r.mustContain("Backup Successful.", "idevicebackup2", "backup", dir)
	r.mustContain("OK", "ibackup", "verify", "--password", pw2, dir)
	assertTree(t, readTree(t, r.files(u)), r.extract(dir, "--password", pw2), "backup after changepw vs phone")

	// encryption off needs the current password; then backups are plain.
	res = r.run("idevicebackup2", "encryption", "off", pw1)
	assert.NotContains(t, res.out, "disabled successfully", res.out)
	assert.Equal(t, "true", r.willEncrypt(u), "a wrong password must not turn encryption off")
	r.mustContain("Backup encryption has been disabled successfully.", "idevicebackup2", "encryption", "off", pw2)
	assert.Equal(t, "false", r.willEncrypt(u))
	r.mustContain("Backup Successful.", "idevicebackup2", "backup", "--full", dir)
	assert.Equal(t, false, readPlist(t, filepath.Join(dir, u, "Manifest.plist"))["IsEncrypted"])
	r.mustContain("OK", "ibackup", "verify", dir)
	assertTree(t, readTree(t, r.files(u)), r.extract(dir), "plain backup after encryption off")
}

// TestEncryptedAcrossTools: an encrypted backup made by ibackup restored by
// idevicebackup2, and one made by idevicebackup2 restored by ibackup.
func TestEncryptedAcrossTools(t *testing.T) {
	t.Parallel()
	r := newRig(t, phoneSpec{Seed: 110, Files: 30})
	u := r.udids[0]
	const pw = "interop"
	res := r.run("idevicebackup2", "encryption", "on", pw)
	skipIfUnbuilt(t, res.out, noChangePassword, "backup encryption (mobilebackup2 ChangePassword)")
	require.Equal(t, 0, res.code, res.out)

	ours := r.backupDir("ours")
	r.ibackup("backup", "--usbmuxd", r.addr, ours)
	backup := readTree(t, r.files(u))
	assert.Equal(t, true, readPlist(t, filepath.Join(ours, u, "Manifest.plist"))["IsEncrypted"])
	change(t, r.files(u), 1)
	r.mustContain("Restore Successful.", "idevicebackup2", "restore", "--system", "--remove", "--password", pw, ours)
	assertTree(t, backup, readTree(t, r.files(u)), "phone after idevicebackup2 restore of ibackup's encrypted backup")

	theirs := r.backupDir("theirs")
	change(t, r.files(u), 2)
	r.mustContain("Backup Successful.", "idevicebackup2", "backup", "--full", theirs)
	backup = readTree(t, r.files(u))
	r.mustContain("OK", "ibackup", "verify", "--password", pw, theirs)
	change(t, r.files(u), 3)
	r.ibackup("restore", "--usbmuxd", r.addr, "--system", "--remove", "--password", pw, theirs)
	assertTree(t, backup, readTree(t, r.files(u)), "phone after ibackup restore of idevicebackup2's encrypted backup")
}
