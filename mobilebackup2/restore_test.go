package mobilebackup2_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/mobilebackup2"
	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
)

const udidB = "00008110-000B0B0B0B0B0B0B"

// countConn counts bytes written after Handshake.
type countConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countConn) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return c.Conn.Write(p)
}

func restoreOnce(t *testing.T, cfg backupagent.Config, o mobilebackup2.RestoreOptions) (*mobilebackup2.RestoreResult, error, int64) {
	t.Helper()
	host, dev := pipe(t)
	done := make(chan error, 1)
	go func() { done <- backupagent.Serve(context.Background(), dev, cfg) }()
	cc := &countConn{Conn: host}
	c := mobilebackup2.NewClient(cc)
	_, err := c.Handshake(context.Background())
	require.NoError(t, err)
	before := cc.n.Load()
	res, rerr := c.Restore(context.Background(), o)
	sent := cc.n.Load() - before
	c.Close()
	<-done
	return res, rerr, sent
}

func phoneA(t *testing.T) (content, dir string, cfg backupagent.Config) {
	t.Helper()
	content, dir = t.TempDir(), t.TempDir()
	writeTree(t, content, map[string]string{
		"HomeDomain/Library/SMS/sms.db": "sms",
		"HomeDomain/Library/Notes/n":    "notes",
		"MediaDomain/Media/DCIM/1.JPG":  string(make([]byte, 70<<10)),
	})
	require.NoError(t, os.Symlink("SMS/sms.db", filepath.Join(content, "HomeDomain/Library/link")))
	cfg = backupagent.Config{ContentDir: content, WorkDir: t.TempDir(), Lockdown: backupfmt.Lockdown{ProductVersion: "17.5.1"}}
	_, err, _ := backupOnce(t, cfg, opts(dir))
	require.NoError(t, err)
	return content, dir, cfg
}

func TestRestoreToOtherPhone(t *testing.T) {
	contentA, dir, _ := phoneA(t)
	before := treeSnapshot(t, dir)
	contentB := t.TempDir()
	cfgB := backupagent.Config{ContentDir: contentB, WorkDir: t.TempDir(), Lockdown: backupfmt.Lockdown{ProductVersion: "18.0"}}
	res, err, _ := restoreOnce(t, cfgB, mobilebackup2.RestoreOptions{Dir: dir, Target: udidB, Source: testUDID, DeviceVersion: "18.0", Remove: true})
	require.NoError(t, err)
	assert.Equal(t, 3, res.FilesSent-4, "3 content files plus Status, Manifest.plist, Manifest.db, Info.plist")
	assert.Equal(t, contentOf(t, contentA), contentOf(t, contentB))
	l, err := os.Readlink(filepath.Join(contentB, "HomeDomain/Library/link"))
	require.NoError(t, err)
	assert.Equal(t, "SMS/sms.db", l)
	assert.Equal(t, before, treeSnapshot(t, dir), "restore must not change the backup")
}

func TestRestoreOntoChangedPhone(t *testing.T) {
	content, dir, cfg := phoneA(t)
	want := contentOf(t, content)
	writeTree(t, content, map[string]string{"HomeDomain/Library/SMS/sms.db": "changed", "HomeDomain/extra": "x"})
	require.NoError(t, os.Remove(filepath.Join(content, "HomeDomain/Library/Notes/n")))
	_, err, _ := restoreOnce(t, cfg, mobilebackup2.RestoreOptions{Dir: dir, Target: testUDID, DeviceVersion: "17.5.1", Remove: true, Copy: true})
	require.NoError(t, err)
	assert.Equal(t, want, contentOf(t, content))
	// --copy: the phone duplicated its previous backup beside it, with a new Info.plist.
	copies, _ := filepath.Glob(filepath.Join(dir, testUDID+"-*"))
	require.Len(t, copies, 1)
	info, err := backupfmt.ReadInfo(filepath.Join(copies[0], "Info.plist"))
	require.NoError(t, err)
	assert.Equal(t, filepath.Base(copies[0]), info.TargetIdentifier)
	fi, err := os.Lstat(copies[0])
	require.NoError(t, err)
	assert.True(t, fi.IsDir(), "a real copy, not a link to the version")
	assert.Equal(t, want, decode(t, filepath.Join(dir, testUDID)), "the backup itself is unchanged")
}

func TestRestoreRefusals(t *testing.T) {
	content, dir, cfg := phoneA(t)
	phone := contentOf(t, content)
	cur, err := filepath.EvalSymlinks(filepath.Join(dir, testUDID))
	require.NoError(t, err)

	// Newer iOS than the phone: refused before sending anything.
	_, err, sent := restoreOnce(t, cfg, mobilebackup2.RestoreOptions{Dir: dir, Target: testUDID, DeviceVersion: "16.4"})
	require.ErrorIs(t, err, mobilebackup2.ErrBackupUnusable)
	assert.Contains(t, err.Error(), "newer")
	assert.Zero(t, sent)

	// With --force the phone itself says 203.
	old := cfg
	old.Lockdown.ProductVersion = "16.4"
	_, err, _ = restoreOnce(t, old, mobilebackup2.RestoreOptions{Dir: dir, Target: testUDID, DeviceVersion: "16.4", Force: true})
	var de *mobilebackup2.DeviceError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, int64(203), de.Code)

	// Bit rot in a stored file: refused, naming the file.
	id := backupfmt.FileID("HomeDomain", "Library/Notes/n")
	p := filepath.Join(cur, id[:2], id)
	require.NoError(t, os.Chmod(p, 0o644))
	require.NoError(t, os.WriteFile(p, []byte("NOTES"), 0o644))
	_, err, sent = restoreOnce(t, cfg, mobilebackup2.RestoreOptions{Dir: dir, Target: testUDID})
	require.ErrorIs(t, err, mobilebackup2.ErrBackupUnusable)
	assert.Contains(t, err.Error(), "Library/Notes/n")
	assert.Zero(t, sent)
	// Forced anyway: the phone's own check of the received files says 205.
	_, err, _ = restoreOnce(t, cfg, mobilebackup2.RestoreOptions{Dir: dir, Target: testUDID, Force: true})
	require.ErrorAs(t, err, &de)
	assert.Equal(t, int64(205), de.Code)
	assert.Equal(t, phone, contentOf(t, content))

	// Unfinished backup: refused.
	st, err := backupfmt.ReadStatus(filepath.Join(cur, "Status.plist"))
	require.NoError(t, err)
	st.SnapshotState = backupfmt.SnapshotUploading
	require.NoError(t, os.Remove(filepath.Join(cur, "Status.plist")))
	require.NoError(t, backupfmt.WriteStatus(filepath.Join(cur, "Status.plist"), st))
	_, err, sent = restoreOnce(t, cfg, mobilebackup2.RestoreOptions{Dir: dir, Target: testUDID, Force: false})
	require.ErrorIs(t, err, mobilebackup2.ErrBackupUnusable)
	assert.Contains(t, err.Error(), "unfinished")
	assert.Zero(t, sent)
	assert.Equal(t, phone, contentOf(t, content))
}

func TestRestoreFaultsAndReboot(t *testing.T) {
	content, dir, cfg := phoneA(t)
	want := contentOf(t, content)
	writeTree(t, content, map[string]string{"HomeDomain/Library/SMS/sms.db": "changed"})
	changed := contentOf(t, content)
	before := treeSnapshot(t, dir)
	o := mobilebackup2.RestoreOptions{Dir: dir, Target: testUDID, Remove: true}

	for _, f := range []backupagent.Faults{{DropMidFile: 2}, {FinalError: 208}} {
		bad := cfg
		bad.Faults = f
		_, err, _ := restoreOnce(t, bad, o)
		require.Error(t, err)
		assert.NotEmpty(t, mobilebackup2.Hint(err), err.Error())
		assert.Equal(t, before, treeSnapshot(t, dir))
		assert.Equal(t, changed, contentOf(t, content), "a failed restore changes nothing on the phone")
	}

	// --no-reboot: applied only at the reboot; a second restore before it is 102.
	st := backupagent.NewState(t.TempDir())
	cfg.State = st
	o.NoReboot = true
	_, err, _ := restoreOnce(t, cfg, o)
	require.NoError(t, err)
	assert.True(t, st.PendingReboot())
	assert.Equal(t, changed, contentOf(t, content))
	_, err, _ = restoreOnce(t, cfg, o)
	var de *mobilebackup2.DeviceError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, int64(102), de.Code)
	require.NoError(t, st.Reboot(content))
	assert.Equal(t, want, contentOf(t, content))
	assert.Equal(t, before, treeSnapshot(t, dir))
}

func TestRestoreWrongPassword(t *testing.T) {
	_, dir, cfg := phoneA(t)
	cur, err := filepath.EvalSymlinks(filepath.Join(dir, testUDID))
	require.NoError(t, err)
	mf, err := backupfmt.ReadManifest(filepath.Join(cur, "Manifest.plist"))
	require.NoError(t, err)
	mf.IsEncrypted = true
	require.NoError(t, os.Remove(filepath.Join(cur, "Manifest.plist")))
	require.NoError(t, backupfmt.WriteManifest(filepath.Join(cur, "Manifest.plist"), mf))

	_, err, sent := restoreOnce(t, cfg, mobilebackup2.RestoreOptions{Dir: dir, Target: testUDID})
	require.ErrorIs(t, err, mobilebackup2.ErrBackupUnusable)
	assert.Contains(t, err.Error(), "password")
	assert.Zero(t, sent)

	assert.ErrorIs(t, err, mobilebackup2.ErrPasswordRequired)

	// Forced past the host's checks, the phone finds no keybag to unlock
	// (205 "No keybag in manifest", §2.5). Real wrong passwords: encryption_test.go.
	_, err, _ = restoreOnce(t, cfg, mobilebackup2.RestoreOptions{Dir: dir, Target: testUDID, Password: "wrong", Force: true})
	var de *mobilebackup2.DeviceError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, int64(205), de.Code)
}
