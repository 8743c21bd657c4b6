package fakedevice

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/phone"
)

// TestBackupConfigFormatAndDiskFull: an iOS 9 phone's backup agent writes
// mbdb-era backups (§5.7) and the disk-full fault reaches the agent.
func TestBackupConfigFormatAndDiskFull(t *testing.T) {
	for _, tc := range []struct {
		profile string
		mbdb    bool
	}{{"ios9", true}, {"ios12", false}, {"ios17", false}} {
		p, err := phone.Create(t.TempDir(), phone.CreateOptions{Profile: tc.profile, Seed: 1, Files: 2, Size: 1 << 10})
		require.NoError(t, err)
		d, err := Open(p.Dir, Options{Faults: Faults{DiskFull: true}})
		require.NoError(t, err)
		cfg := d.backupConfig(context.Background())
		assert.Equal(t, tc.mbdb, cfg.MBDB, tc.profile)
		assert.True(t, cfg.Faults.DeviceFull, tc.profile)
		require.NoError(t, d.Close())
	}
}
