package interop

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOurBackupTheirRestore: idevicebackup2 restores a backup that
// `ibackup backup --usbmuxd` made through the same daemon (issue 10 item 5,
// across tools), after the phone changed.
func TestOurBackupTheirRestore(t *testing.T) {
	t.Parallel()
	r := newRig(t, phoneSpec{Seed: 80})
	u, dir := r.udids[0], r.backupDir("ours")
	r.ibackup("backup", "--usbmuxd", r.addr, dir)
	backup := readTree(t, r.files(u))
	assertTree(t, backup, r.extract(dir), "ibackup backup vs phone")
	status := readPlist(t, filepath.Join(dir, u, "Status.plist"))
	require.Equal(t, "finished", status["SnapshotState"])

	change(t, r.files(u), 1)
	current := readTree(t, r.files(u))
	r.mustContain("Restore Successful.", "idevicebackup2", "restore", dir)
	assertTree(t, expectRestore(current, backup, idevicebackup2Opts(false, false)), readTree(t, r.files(u)), "phone after idevicebackup2 restore")

	change(t, r.files(u), 2)
	r.mustContain("Restore Successful.", "idevicebackup2", "restore", "--system", "--remove", dir)
	assertTree(t, backup, readTree(t, r.files(u)), "phone after idevicebackup2 restore --system --remove")

	// Their incremental backup on top of ours.
	change(t, r.files(u), 3)
	r.mustContain("Backup Successful.", "idevicebackup2", "backup", dir)
	assertTree(t, readTree(t, r.files(u)), r.extract(dir), "idevicebackup2 backup on top of ibackup's")
}

// TestTheirBackupOurRestore: ibackup verify, ls and restore take a backup
// idevicebackup2 made, both full and after an incremental run. Our restore
// sends every option key (false unless asked), so without --remove the
// items the backup lacks stay on the phone.
func TestTheirBackupOurRestore(t *testing.T) {
	t.Parallel()
	r := newRig(t, phoneSpec{Seed: 90})
	u, dir := r.udids[0], r.backupDir("theirs")
	r.mustContain("Backup Successful.", "idevicebackup2", "backup", "--full", dir)
	change(t, r.files(u), 1)
	r.mustContain("Backup Successful.", "idevicebackup2", "backup", dir)
	backup := readTree(t, r.files(u))

	verify := r.run("ibackup", "verify", dir)
	assert.Equal(t, 0, verify.code, "ibackup verify of an idevicebackup2 backup:\n%s", verify.out)
	assert.Contains(t, verify.out, "OK")
	ls := r.ibackup("ls", dir)
	assert.Contains(t, ls, "HomeDomain/Library/Interop1/added-1.txt")

	cases := []struct {
		name  string
		flags []string
		opts  restoreOpts
	}{
		{"plain", nil, restoreOpts{}},
		{"system-remove", []string{"--system", "--remove"}, restoreOpts{system: true, remove: true}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := r.sub(t)
			change(t, r.files(u), 10+i)
			current := readTree(t, r.files(u))
			args := append([]string{"restore", "--usbmuxd", r.addr, dir}, c.flags...)
			r.ibackup(args...)
			assertTree(t, expectRestore(current, backup, c.opts), readTree(t, r.files(u)), "phone after ibackup restore")
		})
	}
}
