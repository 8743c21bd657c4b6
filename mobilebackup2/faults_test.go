package mobilebackup2_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/mobilebackup2"
)

// TestFaultsKeepLastGoodBackup: every failure ends with a clear error, the
// backup directory is byte-for-byte what it was, and the next run succeeds.
func TestFaultsKeepLastGoodBackup(t *testing.T) {
	tests := []struct {
		name   string
		faults backupagent.Faults
		limit  int64
		check  func(t *testing.T, err error)
	}{
		{name: "link dropped mid-file", faults: backupagent.Faults{DropMidFile: 2}, check: func(t *testing.T, err error) {
			assert.ErrorIs(t, err, mobilebackup2.ErrDisconnected)
		}},
		{name: "208 passcode", faults: backupagent.Faults{FinalError: 208}, check: deviceCode(208)},
		{name: "3 leftover snapshot", faults: backupagent.Faults{FinalError: 3}, check: deviceCode(3)},
		{name: "104 remote read error", faults: backupagent.Faults{RemoteErrorFile: 1}, check: deviceCode(104)},
		{name: "phone sees too little space", limit: 64 << 10, check: deviceCode(105)},
		{name: "disk full while writing", faults: backupagent.Faults{IgnoreFreeSpace: true}, limit: 64 << 10, check: func(t *testing.T, err error) {
			assert.ErrorIs(t, err, mobilebackup2.ErrDiskFull)
			assert.Contains(t, mobilebackup2.Hint(err), "free some space")
		}},
		{name: "truncated in transit", faults: backupagent.Faults{TruncateFile: 1}, check: verifyFails("size")},
		{name: "wrong digest", faults: backupagent.Faults{WrongDigestFile: 1}, check: verifyFails("SHA-1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			content, dir := t.TempDir(), t.TempDir()
			writeTree(t, content, map[string]string{
				"HomeDomain/Library/a.db":    "first",
				"MediaDomain/Media/b.bin":    string(make([]byte, 200<<10)),
				"HomeDomain/Library/c.plist": "c",
			})
			cfg := backupagent.Config{ContentDir: content, WorkDir: t.TempDir()}
			good, err, _ := backupOnce(t, cfg, opts(dir))
			require.NoError(t, err)

			// The phone changes; the next backup fails.
			writeTree(t, content, map[string]string{"HomeDomain/Library/a.db": "second version", "HomeDomain/z.txt": "zz",
				"MediaDomain/Media/big.bin": string(make([]byte, 150<<10))})
			before := treeSnapshot(t, dir)
			bad := cfg
			bad.Faults = tt.faults
			o := opts(dir)
			o.SpaceLimit = tt.limit
			_, err, _ = backupOnce(t, bad, o)
			require.Error(t, err)
			tt.check(t, err)
			assert.Equal(t, before, treeSnapshot(t, dir), "backup directory changed by a failed run")
			assert.Empty(t, verifyRecord(t, good.Version, testUDID))

			// The next run succeeds and holds the new content.
			res, err, aerr := backupOnce(t, cfg, opts(dir))
			require.NoError(t, err)
			require.NoError(t, aerr)
			assert.Equal(t, contentOf(t, content), decode(t, filepath.Join(dir, testUDID)))
			assert.Empty(t, verifyRecord(t, res.Version, testUDID))
		})
	}
}

func deviceCode(code int64) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		var de *mobilebackup2.DeviceError
		require.ErrorAs(t, err, &de)
		assert.Equal(t, code, de.Code)
		assert.NotEmpty(t, mobilebackup2.Hint(err))
	}
}

func verifyFails(what string) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		var ve *mobilebackup2.VerifyError
		require.ErrorAs(t, err, &ve)
		require.Len(t, ve.Problems, 1)
		assert.Contains(t, ve.Problems[0].Problem, what)
		assert.NotEmpty(t, ve.Problems[0].Domain)
		assert.Contains(t, err.Error(), ve.Problems[0].Path)
	}
}

// TestSecondBackupCleansAfterCrash: a working copy left by a killed run is
// removed by the next run, which succeeds.
func TestLeftoverWorkDirIsCleaned(t *testing.T) {
	content, dir := t.TempDir(), t.TempDir()
	writeTree(t, content, map[string]string{"HomeDomain/a": "a"})
	cfg := backupagent.Config{ContentDir: content, WorkDir: t.TempDir()}
	_, err, _ := backupOnce(t, cfg, opts(dir))
	require.NoError(t, err)
	junk := filepath.Join(dir, ".ibackup", testUDID, "work-19700101T000000.000000000Z", testUDID)
	require.NoError(t, os.MkdirAll(junk, 0o755))
	_, err, _ = backupOnce(t, cfg, opts(dir))
	require.NoError(t, err)
	_, err = os.Stat(junk)
	assert.True(t, errors.Is(err, os.ErrNotExist))
}
