package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// result is the outcome of one CLI run.
type result struct {
	code           int
	stdout, stderr string
}

// ibackup runs the CLI in-process with a clean environment.
func ibackup(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := run(ctx, e, args)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// mustRun runs the CLI and requires success.
func mustRun(t *testing.T, args ...string) result {
	t.Helper()
	r := ibackup(t, args...)
	require.Equal(t, 0, r.code, "ibackup %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.stdout, r.stderr)
	return r
}

// jsonLines decodes JSON-lines output and returns the last "done" event.
func doneEvent(t *testing.T, out string) map[string]any {
	t.Helper()
	var done map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		if m["event"] == "done" {
			done = m
		}
	}
	require.NotNil(t, done, "no done event in:\n%s", out)
	return done
}

// onlyPhone returns the single phone directory in dir.
func onlyPhone(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var ps []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			ps = append(ps, filepath.Join(dir, e.Name()))
		}
	}
	require.Len(t, ps, 1)
	return ps[0]
}

// TestEndToEnd runs the real stack over the in-memory link: fake new → pair
// → info → backup → change the phone → incremental backup → versions.
func TestEndToEnd(t *testing.T) {
	defer goleak.VerifyNone(t)
	phones, backups := t.TempDir(), t.TempDir()
	mustRun(t, "fake", "new", phones, "--files", "40", "--size", "300K", "--seed", "5")
	ph := onlyPhone(t, phones)
	udid := filepath.Base(ph)

	r := mustRun(t, "fake", "ls", phones)
	assert.Contains(t, r.stdout, udid)

	r = mustRun(t, "devices", "--fake-dir", phones)
	assert.Equal(t, udid+"\n", r.stdout)

	r = mustRun(t, "pair", "--fake-dir", phones)
	assert.Contains(t, r.stdout, "SUCCESS: paired")
	assert.FileExists(t, filepath.Join(phones, ".lockdown", udid+".plist"))
	mustRun(t, "validate", "--fake-dir", phones)

	r = mustRun(t, "info", "--fake-dir", phones, "--key", "ProductVersion")
	assert.Equal(t, "17.5.1\n", r.stdout)
	r = mustRun(t, "info", "--fake-dir", phones, "--json")
	var all map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &all))
	assert.Equal(t, udid, all["UniqueDeviceID"])

	r = mustRun(t, "backup", "--fake-dir", phones, backups, "--json")
	done := doneEvent(t, r.stdout)
	assert.Equal(t, true, done["full"])
	assert.GreaterOrEqual(t, done["files_verified"], float64(40))
	assert.FileExists(t, filepath.Join(backups, udid, "Manifest.db"))
	assert.FileExists(t, filepath.Join(backups, udid, "Status.plist"))

	// Change the phone: one new file, one removed.
	files := filepath.Join(ph, "files")
	require.NoError(t, os.WriteFile(filepath.Join(files, "HomeDomain", "Library", "added.txt"), []byte("new on the phone"), 0o644))
	require.NoError(t, os.Remove(filepath.Join(files, "HomeDomain", "Library", "SMS", "sms.db")))

	r = mustRun(t, "backup", "--fake-dir", phones, backups, "--json")
	done = doneEvent(t, r.stdout)
	assert.Equal(t, false, done["full"], "second backup is incremental")
	assert.Less(t, done["files_received"], float64(40))

	r = mustRun(t, "versions", backups, "--json")
	var vs []versionJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &vs))
	require.Len(t, vs, 2)
	assert.True(t, vs[1].Current)
	assert.True(t, vs[1].Verified)
	for _, v := range vs {
		assert.Positive(t, v.Files, "version %s lists its files", v.ID)
		assert.Positive(t, v.Bytes, "version %s counts its bytes", v.ID)
	}

	// Restore puts the backup back: the removed file returns.
	added := filepath.Join(files, "HomeDomain", "Library", "added.txt")
	require.NoError(t, os.Remove(added))
	r = mustRun(t, "restore", "--fake-dir", phones, backups)
	assert.Contains(t, r.stdout, "restore complete")
	b, err := os.ReadFile(added)
	require.NoError(t, err, "restored file is back on the phone")
	assert.Equal(t, "new on the phone", string(b))

	// Offline: verify, info, ls, extract.
	r = mustRun(t, "verify", backups)
	assert.Contains(t, r.stdout, ": OK")
	r = mustRun(t, "info", backups, "--json")
	var sum map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sum))
	assert.Equal(t, udid, sum["udid"])
	assert.Equal(t, "17.5.1", sum["productVersion"])
	r = mustRun(t, "ls", backups, "--domain", "HomeDomain")
	assert.Contains(t, r.stdout, "HomeDomain/Library/added.txt")
	assert.NotContains(t, r.stdout, "sms.db")
	out := t.TempDir()
	mustRun(t, "extract", backups, out, "--domain", "HomeDomain", "--path", "Library/added.txt")
	b, err = os.ReadFile(filepath.Join(out, "HomeDomain", "Library", "added.txt"))
	require.NoError(t, err)
	assert.Equal(t, "new on the phone", string(b))

	// Damage: verify finds it (exit 1); a missing backup is unreadable (exit 2).
	manifestRows := mustRun(t, "ls", backups, "--json").stdout
	victim := ""
	for _, line := range strings.Split(manifestRows, "\n") {
		var en map[string]any
		if json.Unmarshal([]byte(line), &en) == nil && en["type"] == "file" && en["size"].(float64) > 0 {
			victim = en["fileID"].(string)
			break
		}
	}
	require.NotEmpty(t, victim)
	require.NoError(t, os.Remove(filepath.Join(backups, udid, victim[:2], victim)))
	r = ibackup(t, "verify", backups)
	assert.Equal(t, 1, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "missing")
	r = ibackup(t, "restore", "--fake-dir", phones, backups)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "cannot be restored")
	assert.Contains(t, r.stderr, "missing")

	repaired := filepath.Join(t.TempDir(), "repaired")
	r = mustRun(t, "repair", backups, "--out", repaired)
	assert.Contains(t, r.stdout, "dropped")
	assert.Contains(t, mustRun(t, "verify", repaired).stdout, ": OK")
	r = ibackup(t, "verify", filepath.Join(backups, "nothing-here"))
	assert.Equal(t, 2, r.code)

	r = mustRun(t, "unpair", "--fake-dir", phones)
	assert.Contains(t, r.stdout, "SUCCESS: unpaired")
	r = ibackup(t, "validate", "--fake-dir", phones)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "hint: ")
}

// TestDefaultPhone is the README's first command: an empty --fake-dir gets a
// default simulated phone and the backup works.
func TestDefaultPhone(t *testing.T) {
	if testing.Short() {
		t.Skip("creates the default 300-file phone")
	}
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	phones, backups := filepath.Join(dir, "demo-phone"), filepath.Join(dir, "backups")
	r := mustRun(t, "backup", "--fake-dir", phones, backups)
	assert.Contains(t, r.stderr, "had no simulated phone; created simulated iPhone14,5 (ios17, iOS 17.5.1)")
	assert.Contains(t, r.stdout, "backup complete:")
	assert.Contains(t, r.stdout, "(full,")
}

func TestFaults(t *testing.T) {
	defer goleak.VerifyNone(t)
	phones, backups := t.TempDir(), t.TempDir()
	mustRun(t, "fake", "new", phones, "--files", "10", "--size", "50K")

	r := ibackup(t, "pair", "--fake-dir", phones, "--fake-fault", "deny-trust")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "UserDeniedPairing")
	assert.Contains(t, r.stderr, "hint: ")

	r = ibackup(t, "backup", "--fake-dir", phones, backups, "--fake-fault", "error=208")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "208")
	assert.Contains(t, r.stderr, "hint: the phone asked for its passcode")

	r = mustRun(t, "backup", "--fake-dir", phones, backups, "--fake-fault", "passcode-wait=10ms")
	assert.Contains(t, r.stderr, "phone: Enter the passcode on the device to continue.")

	r = ibackup(t, "backup", "--fake-dir", phones, backups, "--fake-fault", "passcode-wait")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "phone: Enter the passcode")
	assert.Contains(t, r.stderr, "208")

	r = ibackup(t, "backup", "--fake-dir", phones, backups, "--full", "--fake-fault", "remote-error-file=2")
	assert.Equal(t, 1, r.code, r.stdout)
	assert.Contains(t, r.stderr, "hint: ")

	r = mustRun(t, "versions", backups, "--json")
	var vs []versionJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &vs))
	assert.Len(t, vs, 1, "failed backups leave the last good one as it was")
	mustRun(t, "verify", backups)

	r = ibackup(t, "backup", "--fake-dir", phones, backups, "--fake-fault", "bogus")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "unknown fault")

	r = ibackup(t, "pair", "--fake-fault", "locked")
	assert.Equal(t, 2, r.code)
}

// syncBuffer is a goroutine-safe writer for output of background commands.
type syncBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// TestProfilesBackup backs up a small phone of every profile (iOS 9 uses
// TLS 1.0 and DeviceLink 300, iOS 14+ DeviceLink 400).
func TestProfilesBackup(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, p := range []string{"ios9", "ios12", "ios14", "ios17", "ios26"} {
		t.Run(p, func(t *testing.T) {
			phones, backups := t.TempDir(), t.TempDir()
			mustRun(t, "fake", "new", phones, "--profile", p, "--files", "6", "--size", "20K")
			r := mustRun(t, "backup", "--fake-dir", phones, backups, "--json")
			assert.Equal(t, true, doneEvent(t, r.stdout)["full"])
			r = mustRun(t, "info", backups, "--json")
			var sum map[string]any
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &sum))
			assert.Equal(t, filepath.Base(onlyPhone(t, phones)), sum["udid"])
			if p == "ios9" {
				checkMBDBBackup(t, phones, backups)
			}
		})
	}
}

// checkMBDBBackup: an iOS 9 phone's backup is in the iOS 5–9 format
// (Manifest.mbdb, flat <UDID>/<fileID>, Status 2.4, §5.7); verify, ls,
// extract, an incremental backup and a restore all work on it.
func checkMBDBBackup(t *testing.T, phones, backups string) {
	t.Helper()
	ph := onlyPhone(t, phones)
	udid := filepath.Base(ph)
	u := filepath.Join(backups, udid)
	assert.FileExists(t, filepath.Join(u, "Manifest.mbdb"))
	assert.NoFileExists(t, filepath.Join(u, "Manifest.db"))
	ents, err := os.ReadDir(u)
	require.NoError(t, err)
	for _, e := range ents {
		assert.False(t, e.IsDir(), "flat layout has no folder %s", e.Name())
	}
	r := mustRun(t, "info", backups, "--json")
	assert.Contains(t, r.stdout, "Manifest.mbdb")
	assert.Contains(t, mustRun(t, "verify", backups).stdout, ": OK")
	assert.Contains(t, mustRun(t, "ls", backups, "--domain", "HomeDomain").stdout, "Library/SMS/sms.db")
	out := t.TempDir()
	mustRun(t, "extract", backups, out, "--domain", "HomeDomain")
	sms := filepath.Join("HomeDomain", "Library", "SMS", "sms.db")
	want, err := os.ReadFile(filepath.Join(ph, "files", sms))
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(out, sms))
	require.NoError(t, err)
	assert.Equal(t, want, got)

	added := filepath.Join(ph, "files", "HomeDomain", "Library", "added.txt")
	require.NoError(t, os.WriteFile(added, []byte("after the first backup"), 0o644))
	r = mustRun(t, "backup", "--fake-dir", phones, backups, "--json")
	assert.Equal(t, false, doneEvent(t, r.stdout)["full"], "incremental from Status.plist 2.4 + Manifest.mbdb")

	require.NoError(t, os.Remove(filepath.Join(ph, "files", sms)))
	require.NoError(t, os.Remove(added))
	mustRun(t, "restore", "--fake-dir", phones, backups)
	b, err := os.ReadFile(filepath.Join(ph, "files", sms))
	require.NoError(t, err)
	assert.Equal(t, want, b)
	assert.FileExists(t, added)
}

// TestDiskFull: the phone's own storage is full: backup and restore end
// with MBError 106, a clear hint, and the last good backup untouched.
func TestDiskFull(t *testing.T) {
	defer goleak.VerifyNone(t)
	phones, backups := t.TempDir(), t.TempDir()
	mustRun(t, "fake", "new", phones, "--files", "6", "--size", "20K")
	mustRun(t, "backup", "--fake-dir", phones, backups)
	r := ibackup(t, "backup", "--fake-dir", phones, backups, "--full", "--fake-fault", "disk-full")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "error 106")
	assert.Contains(t, r.stderr, "hint: the phone's own storage is full")

	victim := filepath.Join(onlyPhone(t, phones), "files", "HomeDomain", "Library", "SMS", "sms.db")
	require.NoError(t, os.Remove(victim))
	r = ibackup(t, "restore", "--fake-dir", phones, backups, "--fake-fault", "disk-full")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "Insufficient free disk space on device to restore")
	assert.Contains(t, r.stderr, "hint: the phone's own storage is full")
	assert.NoFileExists(t, victim, "nothing was restored")

	r = mustRun(t, "versions", backups, "--json")
	var vs []versionJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &vs))
	assert.Len(t, vs, 1)
	mustRun(t, "verify", backups)
	mustRun(t, "restore", "--fake-dir", phones, backups)
	assert.FileExists(t, victim)
}

// TestRestoreNoReboot: a restore that waits for the reboot is applied when
// the phone is unplugged (the simulated restart).
func TestRestoreNoReboot(t *testing.T) {
	phones, backups := t.TempDir(), t.TempDir()
	mustRun(t, "fake", "new", phones, "--files", "6", "--size", "20K")
	mustRun(t, "backup", "--fake-dir", phones, backups)
	victim := filepath.Join(onlyPhone(t, phones), "files", "HomeDomain", "Library", "SMS", "sms.db")
	require.NoError(t, os.Remove(victim))
	mustRun(t, "restore", "--fake-dir", phones, backups, "--no-reboot")
	assert.FileExists(t, victim)
}

// TestEncryption: encryption on → encrypted backup → verify with and
// without the password → change the password → restore → encryption off.
func TestEncryption(t *testing.T) {
	defer goleak.VerifyNone(t)
	phones, backups := t.TempDir(), t.TempDir()
	mustRun(t, "fake", "new", phones, "--files", "8", "--size", "30K")
	mustRun(t, "encryption", "on", "--fake-dir", phones, "--password", "secret")
	r := mustRun(t, "info", "--fake-dir", phones, "--domain", "com.apple.mobile.backup", "--key", "WillEncrypt")
	assert.Equal(t, "true\n", r.stdout)
	r = ibackup(t, "encryption", "on", "--fake-dir", phones, "--password", "again")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "already enabled")

	mustRun(t, "backup", "--fake-dir", phones, backups, "--password", "secret")
	assert.Contains(t, mustRun(t, "verify", backups, "--password", "secret").stdout, ": OK")
	assert.Equal(t, 2, ibackup(t, "verify", backups).code, "encrypted backup without a password")
	assert.Equal(t, 2, ibackup(t, "verify", backups, "--password", "wrong").code)
	r = mustRun(t, "info", backups, "--json", "--password", "secret")
	assert.Contains(t, r.stdout, `"encrypted": true`)

	mustRun(t, "encryption", "changepw", "--fake-dir", phones, "--password", "secret", "--new-password", "s2")
	r = ibackup(t, "encryption", "off", "--fake-dir", phones, "--password", "wrong")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "hint: the backup password is wrong")

	r = ibackup(t, "restore", "--fake-dir", phones, backups)
	assert.Equal(t, 1, r.code, "an encrypted backup needs its password")
	mustRun(t, "restore", "--fake-dir", phones, backups, "--password", "secret")
	// Restoring an encrypted backup gives the phone that backup's password.
	mustRun(t, "encryption", "off", "--fake-dir", phones, "--password", "secret")
	ps := onlyPhone(t, phones)
	b, err := os.ReadFile(filepath.Join(ps, "device.plist"))
	require.NoError(t, err)
	assert.NotContains(t, string(b), "BackupPassword")
}
