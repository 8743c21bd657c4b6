package interop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIdevicebackup2Backup: a full backup, then an incremental one after
// the phone changed. Each must be "Backup Successful.", hold exactly the
// phone's content (read back with ibackup extract) and pass ibackup verify;
// the incremental one must carry fewer files than the full one
// (libimobiledevice-client-needs.md §4.2, §4.9).
func TestIdevicebackup2Backup(t *testing.T) {
	t.Parallel()
	r := newRig(t, phoneSpec{Seed: 50})
	u, dir := r.udids[0], r.backupDir("backups")
	phone0 := readTree(t, r.files(u))
	require.NotEmpty(t, phone0)

	out := r.mustContain("Backup Successful.", "idevicebackup2", "backup", "--full", dir)
	full := received(out)
	for _, f := range []string{"Info.plist", "Manifest.plist", "Manifest.db", "Status.plist"} {
		assert.FileExists(t, filepath.Join(dir, u, f))
	}
	status := readPlist(t, filepath.Join(dir, u, "Status.plist"))
	assert.Equal(t, "finished", status["SnapshotState"])
	assert.Equal(t, true, status["IsFullBackup"])
	info := readPlist(t, filepath.Join(dir, u, "Info.plist"))
	assert.Equal(t, u, info["Target Identifier"])
	// The host builds Info.plist from lockdown and installation_proxy
	// (§4.4): the phone's user apps (AppDomain-<bundle>) are listed.
	assert.NotEmpty(t, info["Installed Applications"])
	assert.NotEmpty(t, info["Applications"])
	r.mustContain(u, "ibackup", "info", dir)
	assertTree(t, phone0, r.extract(dir), "full backup vs phone")
	r.mustContain("OK", "ibackup", "verify", dir)

	change(t, r.files(u), 1)
	phone1 := readTree(t, r.files(u))
	out = r.mustContain("Backup Successful.", "idevicebackup2", "backup", dir)
	incr := received(out)
	assert.Greater(t, incr, 0, out)
	assert.Less(t, incr, full, "an incremental backup re-sends only what changed")
	status = readPlist(t, filepath.Join(dir, u, "Status.plist"))
	assert.Equal(t, "finished", status["SnapshotState"])
	assert.Equal(t, false, status["IsFullBackup"])
	assertTree(t, phone1, r.extract(dir), "incremental backup vs phone")
	r.mustContain("OK", "ibackup", "verify", dir)

	// Nothing changed: a third backup still succeeds and still matches.
	r.mustContain("Backup Successful.", "idevicebackup2", "backup", dir)
	assertTree(t, phone1, r.extract(dir), "unchanged incremental backup vs phone")
}

// TestIdevicebackup2Restore: restores of one backup with every option
// combination idevicebackup2 1.3.0 has for content. Before each restore the
// phone is changed; afterwards its tree must be exactly what the options
// ask for (expectRestore). 1.3.0 sends RemoveItemsNotRestored only with
// --remove (corrections.md V8); without the key the device removes the
// items the backup does not have (removeWhenAbsent).
func TestIdevicebackup2Restore(t *testing.T) {
	t.Parallel()
	r := newRig(t, phoneSpec{Seed: 60})
	u, dir := r.udids[0], r.backupDir("backups")
	r.mustContain("Backup Successful.", "idevicebackup2", "backup", "--full", dir)
	backup := readTree(t, r.files(u))
	restoreApps := filepath.Join(r.phones, u, "afc", "iTunesRestore", "RestoreApplications.plist")

	cases := []struct {
		name  string
		flags []string
		opts  restoreOpts
		apps  bool // RestoreApplications.plist written
	}{
		{"plain", nil, idevicebackup2Opts(false, false), true},
		{"system", []string{"--system"}, idevicebackup2Opts(true, false), true},
		{"remove", []string{"--remove"}, idevicebackup2Opts(false, true), true},
		{"system-remove", []string{"--system", "--remove"}, idevicebackup2Opts(true, true), true},
		{"skip-apps", []string{"--skip-apps"}, idevicebackup2Opts(false, false), false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := r.sub(t)
			require.NoError(t, os.RemoveAll(filepath.Dir(restoreApps)))
			change(t, r.files(u), 10+i)
			current := readTree(t, r.files(u))
			require.NotEmpty(t, diff(backup, current))

			args := append(append([]string{"restore"}, c.flags...), dir)
			out := r.mustContain("Restore Successful.", "idevicebackup2", args...)
			assertTree(t, expectRestore(current, backup, c.opts), readTree(t, r.files(u)), "phone after restore "+strings.Join(c.flags, " "))
			if !c.apps {
				assert.NoFileExists(t, restoreApps, "--skip-apps")
				return
			}
			// The host hands the backup's apps to the phone over AFC (§4.2 step 10).
			require.FileExists(t, restoreApps, out)
			apps := readPlist(t, restoreApps)
			assert.NotEmpty(t, apps)
			for id := range apps {
				assert.False(t, strings.HasPrefix(id, "com.apple."), "only apps with SINF and metadata: %s", id)
			}
		})
	}
}

// TestIdevicebackup2RestoreOtherDevice: -s restores the backup of phone A
// onto phone B (mobilebackup2-and-backup-format.md §7.4). B must get A's
// content in the restored domains and keep its own elsewhere, and A's
// backup must stay as it was.
func TestIdevicebackup2RestoreOtherDevice(t *testing.T) {
	t.Parallel()
	r := newRig(t, phoneSpec{Seed: 70, Files: 40}, phoneSpec{Seed: 71, Files: 40})
	a, b, dir := r.udids[0], r.udids[1], r.backupDir("backups")
	r.mustContain("Backup Successful.", "idevicebackup2", "-u", a, "backup", "--full", dir)
	treeA := readTree(t, r.files(a))
	change(t, r.files(a), 1) // A moves on; its backup must not
	before := r.extract(dir)

	currentB := readTree(t, r.files(b))
	require.NotEmpty(t, diff(treeA, currentB))
	r.mustContain("Restore Successful.", "idevicebackup2", "-u", b, "-s", a, "restore", dir)
	assertTree(t, expectRestore(currentB, treeA, idevicebackup2Opts(false, false)), readTree(t, r.files(b)), "phone B after restore of A's backup")

	r.mustContain("Restore Successful.", "idevicebackup2", "-u", b, "-s", a, "restore", "--system", "--remove", dir)
	assertTree(t, treeA, readTree(t, r.files(b)), "phone B after --system --remove restore of A's backup")
	assertTree(t, before, r.extract(dir), "A's backup after restoring it elsewhere")
	_, err := os.Stat(filepath.Join(dir, b))
	assert.True(t, os.IsNotExist(err), "no backup folder for B appears: %v", err)
}

// TestIdevicebackup2RestoreCopyAndNoReboot: --copy makes the phone
// duplicate the target's backup folder on the host before restoring
// (mobilebackup2-and-backup-format.md §7.2 step 6); --no-reboot leaves the restore waiting for the
// next restart of the phone (RestoreShouldReboot false), which refuses a
// second restore meanwhile and applies when the phone is unplugged.
func TestIdevicebackup2RestoreCopyAndNoReboot(t *testing.T) {
	t.Parallel()
	r := newRig(t, phoneSpec{Seed: 65, Files: 30})
	u, dir := r.udids[0], r.backupDir("backups")
	r.mustContain("Backup Successful.", "idevicebackup2", "backup", "--full", dir)
	backup := readTree(t, r.files(u))

	change(t, r.files(u), 1)
	current := readTree(t, r.files(u))
	r.mustContain("Restore Successful.", "idevicebackup2", "restore", "--copy", dir)
	assertTree(t, expectRestore(current, backup, idevicebackup2Opts(false, false)), readTree(t, r.files(u)), "phone after restore --copy")
	copies, err := filepath.Glob(filepath.Join(dir, u+"-*"))
	require.NoError(t, err)
	require.Len(t, copies, 1, "one copy of the backup folder")
	// The phone rewrites Info.plist in the copy. idevicebackup2 1.3.0
	// copies only one directory level (libimobiledevice-client-needs.md
	// §4.7 DLMessageCopyItem), so the <xx>/ file folders are not in the
	// copy; the top-level files are.
	info := readPlist(t, filepath.Join(copies[0], "Info.plist"))
	assert.Equal(t, filepath.Base(copies[0]), info["Target Identifier"])
	for _, f := range []string{"Manifest.db", "Manifest.plist", "Status.plist"} {
		assert.Equal(t, readTree(t, filepath.Join(dir, u))[f], readTree(t, copies[0])[f], f)
	}

	change(t, r.files(u), 2)
	current = readTree(t, r.files(u))
	r.mustContain("Restore Successful.", "idevicebackup2", "restore", "--no-reboot", dir)
	assertTree(t, current, readTree(t, r.files(u)), "nothing changes before the reboot")
	res := r.run("idevicebackup2", "restore", dir)
	assert.Equal(t, 256-102, res.code, res.out)
	assert.Contains(t, res.out, "Restore Failed (Error Code 102).", res.out)
	r.restartDaemon() // unplugged: the phone restarts and applies the restore
	assertTree(t, expectRestore(current, backup, idevicebackup2Opts(false, false)), readTree(t, r.files(u)), "phone after the reboot")
	r.mustContain("Restore Successful.", "idevicebackup2", "restore", dir)
}
