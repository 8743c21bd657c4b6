package interop

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIdevicebackup2Profiles: backup, incremental backup and restore with
// idevicebackup2 for the phones of the other profiles (ios17 is every other
// test's phone). iOS 9 devices write Manifest.mbdb with files stored flat
// as <UDID>/<fileID> (mobilebackup2-and-backup-format.md §5.7); later ones
// Manifest.db with <UDID>/<xx>/<fileID> (§5.5).
func TestIdevicebackup2Profiles(t *testing.T) {
	t.Parallel()
	profiles := []string{"ios9", "ios12", "ios14", "ios26"}
	var specs []phoneSpec
	for i, p := range profiles {
		specs = append(specs, phoneSpec{Seed: 140 + i, Files: 25, Size: "100K", Profile: p})
	}
	r := newRig(t, specs...)
	for i, prof := range profiles {
		t.Run(prof, func(t *testing.T) {
			r := r.sub(t)
			u, dir := r.udids[i], r.backupDir(prof)
			r.mustContain("Backup Successful.", "idevicebackup2", "-u", u, "backup", "--full", dir)
			manifest := "Manifest.db"
			if prof == "ios9" {
				manifest = "Manifest.mbdb"
				assert.NoFileExists(t, filepath.Join(dir, u, "Manifest.db"))
			}
			require.FileExists(t, filepath.Join(dir, u, manifest))
			assertTree(t, readTree(t, r.files(u)), r.extract(dir), "full backup vs phone")
			r.mustContain("OK", "ibackup", "verify", dir)

			change(t, r.files(u), 1)
			r.mustContain("Backup Successful.", "idevicebackup2", "-u", u, "backup", dir)
			backup := readTree(t, r.files(u))
			assertTree(t, backup, r.extract(dir), "incremental backup vs phone")
			r.mustContain("OK", "ibackup", "verify", dir)

			change(t, r.files(u), 2)
			r.mustContain("Restore Successful.", "idevicebackup2", "-u", u, "restore", "--system", "--remove", dir)
			assertTree(t, backup, readTree(t, r.files(u)), "phone after restore")
		})
	}
}
