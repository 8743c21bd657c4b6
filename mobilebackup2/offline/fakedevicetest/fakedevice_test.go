package fakedevicetest_test

// Integration with the fake device (fakedevice/backupagent) and the host
// engine (mobilebackup2): backups made over the real protocol verify, and a
// damaged one repaired by Repair is accepted for restore by the fake phone.

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/fakedevice/fakenet"
	"github.com/ibackup/ibackup/mobilebackup2"
	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/keybag"
	"github.com/ibackup/ibackup/mobilebackup2/offline"
)

const (
	udidA = "00008101-000A0A0A0A0A0A0A"
	udidB = "00008110-000B0B0B0B0B0B0B"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tcpPipe returns both ends of a buffered loopback connection.
func tcpPipe(t *testing.T) (host, device net.Conn) { return fakenet.Pipe(t) }

// session runs fn against a fake phone with cfg.
func session(t *testing.T, cfg backupagent.Config, fn func(c *mobilebackup2.Client) error) error {
	t.Helper()
	host, dev := tcpPipe(t)
	done := make(chan error, 1)
	go func() { done <- backupagent.Serve(context.Background(), dev, cfg) }()
	c := mobilebackup2.NewClient(host)
	_, err := c.Handshake(context.Background())
	require.NoError(t, err)
	err = fn(c)
	c.Close()
	<-done
	return err
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(c), 0o644))
	}
}

// regularFiles returns "<Domain>/<rel>" → content of a phone's content tree.
func regularFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || !info.Mode().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return err
	}))
	return out
}

func TestFakeDeviceBackupRepairRestore(t *testing.T) {
	content, backupDir := t.TempDir(), t.TempDir()
	files := map[string]string{
		"HomeDomain/Library/SMS/sms.db":                 "sms",
		"HomeDomain/Library/Notes/notes.sqlite":         "notes",
		"MediaDomain/Media/DCIM/100APPLE/IMG_0001.JPG":  string(make([]byte, 70<<10)),
		"AppDomain-com.example.app/Documents/data.json": "{}",
	}
	writeTree(t, content, files)
	cfgA := backupagent.Config{ContentDir: content, WorkDir: t.TempDir(), Lockdown: backupfmt.Lockdown{ProductVersion: "17.5.1"}}
	err := session(t, cfgA, func(c *mobilebackup2.Client) error {
		_, err := c.Backup(context.Background(), mobilebackup2.BackupOptions{Dir: backupDir, Target: udidA, NoSync: true,
			Info: &mobilebackup2.InfoInput{Values: map[string]any{"BuildVersion": "21F90", "DeviceName": "Phone A",
				"ProductType": "iPhone14,5", "ProductVersion": "17.5.1", "SerialNumber": "F2LXXXXXXXXX", "UniqueDeviceID": udidA}}})
		return err
	})
	require.NoError(t, err)

	// A backup made over the protocol verifies clean, with our hash record.
	rep, err := offline.Verify(backupDir, offline.VerifyOptions{})
	require.NoError(t, err)
	assert.Equal(t, offline.ExitClean, rep.ExitCode(), "%v", rep.Problems)
	assert.EqualValues(t, 4, rep.Files)
	assert.True(t, rep.UsedHashRecord)

	// Damage: a missing content file, a truncated Status.plist, an empty Manifest.plist.
	udidDir := filepath.Join(backupDir, udidA)
	lost := backupfmt.FileID("HomeDomain", "Library/Notes/notes.sqlite")
	require.NoError(t, os.Remove(filepath.Join(udidDir, lost[:2], lost)))
	require.NoError(t, os.Truncate(filepath.Join(udidDir, "Status.plist"), 9))
	require.NoError(t, os.WriteFile(filepath.Join(udidDir, "Manifest.plist"), nil, 0o644))
	rep, err = offline.Verify(backupDir, offline.VerifyOptions{})
	require.NoError(t, err)
	var kinds []string
	for _, p := range rep.Problems {
		kinds = append(kinds, string(p.Kind)+":"+p.Path)
	}
	sort.Strings(kinds)
	assert.Contains(t, kinds, "missing:Library/Notes/notes.sqlite")
	assert.Contains(t, kinds, "metadata:Status.plist")
	assert.Contains(t, kinds, "metadata:Manifest.plist")
	assert.Contains(t, kinds, "checksum-mismatch:Status.plist")

	out := filepath.Join(t.TempDir(), "repaired")
	rr, err := offline.Repair(backupDir, out, offline.RepairOptions{})
	require.NoError(t, err)
	require.Len(t, rr.Dropped, 1)
	assert.Equal(t, "Library/Notes/notes.sqlite", rr.Dropped[0].Path)
	assert.Equal(t, offline.ExitClean, rr.Verify.ExitCode(), "%v", rr.Verify.Problems)

	// The fake phone accepts the repaired backup for restore.
	contentB := t.TempDir()
	cfgB := backupagent.Config{ContentDir: contentB, WorkDir: t.TempDir(), Lockdown: backupfmt.Lockdown{ProductVersion: "18.0"}}
	err = session(t, cfgB, func(c *mobilebackup2.Client) error {
		_, err := c.Restore(context.Background(), mobilebackup2.RestoreOptions{Dir: out, Target: udidB, Source: udidA, DeviceVersion: "18.0"})
		return err
	})
	require.NoError(t, err)
	want := regularFiles(t, content)
	delete(want, "HomeDomain/Library/Notes/notes.sqlite")
	assert.Equal(t, want, regularFiles(t, contentB))
}

// TestEncryptedRepairRestore: an encrypted iOS 10.2+ backup written by
// offline.Writer, damaged, repaired with the password, restores to the fake
// phone with the same password.
func TestEncryptedRepairRestore(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, udidA)
	w, err := offline.NewWriter(dir, offline.WriterConfig{
		Password: "secret", KeybagOptions: keybag.NewOptions{Iter: 2, DPIC: 2},
		Info:     &backupfmt.Info{DeviceName: "Phone A", ProductVersion: "17.0", TargetIdentifier: udidA, UniqueIdentifier: udidA, TargetType: "Device"},
		Manifest: backupfmt.Manifest{Lockdown: backupfmt.Lockdown{ProductVersion: "17.0", UniqueDeviceID: udidA}},
	})
	require.NoError(t, err)
	files := map[string]string{
		"HomeDomain/Library/SMS/sms.db":          "sms data",
		"HomeDomain/Library/Notes/notes.sqlite":  "notes",
		"CameraRollDomain/Media/DCIM/IMG_1.HEIC": string(make([]byte, 40000)),
	}
	for p, c := range files {
		dom, rel, _ := strings.Cut(p, "/")
		require.NoError(t, w.Add(backupfmt.Record{Domain: dom, RelativePath: rel,
			File: &backupfmt.MBFile{Mode: 0o100644, ProtectionClass: 3, UserID: 501, GroupID: 501}}, strings.NewReader(c)))
	}
	require.NoError(t, w.Close())

	lost := backupfmt.FileID("HomeDomain", "Library/Notes/notes.sqlite")
	require.NoError(t, os.Remove(filepath.Join(dir, lost[:2], lost)))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Status.plist"), nil, 0o644))

	out := filepath.Join(t.TempDir(), "repaired")
	rr, err := offline.Repair(dir, out, offline.RepairOptions{Options: offline.Options{Password: "secret"}})
	require.NoError(t, err)
	require.Len(t, rr.Dropped, 1)
	assert.Equal(t, offline.ExitClean, rr.Verify.ExitCode(), "%v", rr.Verify.Problems)

	contentB := t.TempDir()
	cfgB := backupagent.Config{ContentDir: contentB, WorkDir: t.TempDir(), Lockdown: backupfmt.Lockdown{ProductVersion: "18.0"}}
	err = session(t, cfgB, func(c *mobilebackup2.Client) error {
		_, err := c.Restore(context.Background(), mobilebackup2.RestoreOptions{Dir: out, Target: udidB, Source: udidA,
			DeviceVersion: "18.0", Password: "secret"})
		return err
	})
	require.NoError(t, err)
	delete(files, "HomeDomain/Library/Notes/notes.sqlite")
	assert.Equal(t, files, regularFiles(t, contentB))
}
