package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startDaemon runs `ibackup usbmuxd --fake-dir phones` in-process and
// returns its socket address once the phones are visible.
func startDaemon(t *testing.T, phones string, extra ...string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "mux.sock")
	addr := "UNIX:" + sock
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &syncBuffer{b: &errb}, getenv: func(string) string { return "" }}
	go func() {
		done <- run(ctx, e, append([]string{"usbmuxd", "--socket", addr, "--fake-dir", phones}, extra...))
	}()
	t.Cleanup(func() {
		cancel()
		assert.Equal(t, 0, <-done, "daemon exit code")
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if r := ibackup(t, "devices", "--usbmuxd", addr); r.code == 0 && r.stdout != "" {
			return addr
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("daemon did not come up")
	return ""
}

// tool runs an external program with the daemon's socket address.
func tool(t *testing.T, addr string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS="+addr)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return string(out)
}

// TestDaemonWithOurClient: our own CLI through our daemon (--usbmuxd).
func TestDaemonWithOurClient(t *testing.T) {
	phones, backups := t.TempDir(), t.TempDir()
	mustRun(t, "fake", "new", phones, "--files", "15", "--size", "60K", "--seed", "11")
	addr := startDaemon(t, phones)
	r := mustRun(t, "backup", "--usbmuxd", addr, backups, "--json")
	assert.Equal(t, true, doneEvent(t, r.stdout)["full"])
	assert.FileExists(t, filepath.Join(phones, ".lockdown", onlyUDID(t, phones)+".plist"),
		"pair record saved through the daemon")
}

func onlyUDID(t *testing.T, phones string) string {
	t.Helper()
	return filepath.Base(onlyPhone(t, phones))
}

// TestInteropLibimobiledevice runs Debian's libimobiledevice-utils against
// our daemon and fake phone (issue 10 item 5), when they are installed.
func TestInteropLibimobiledevice(t *testing.T) {
	if testing.Short() {
		t.Skip("runs external tools")
	}
	for _, n := range []string{"idevice_id", "ideviceinfo", "idevicepair", "idevicebackup2"} {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed (apt-get install libimobiledevice-utils)", n)
		}
	}
	phones, backups := t.TempDir(), t.TempDir()
	mustRun(t, "fake", "new", phones, "--files", "25", "--size", "80K", "--seed", "12")
	udid := onlyUDID(t, phones)
	addr := startDaemon(t, phones)

	assert.Equal(t, udid, strings.TrimSpace(tool(t, addr, "idevice_id", "-l")))
	assert.Contains(t, tool(t, addr, "idevicepair", "pair"), "SUCCESS")
	assert.Contains(t, tool(t, addr, "idevicepair", "validate"), "SUCCESS")
	assert.Equal(t, "17.5.1", strings.TrimSpace(tool(t, addr, "ideviceinfo", "-k", "ProductVersion")))
	assert.Contains(t, tool(t, addr, "ideviceinfo", "-q", "com.apple.mobile.backup"), "WillEncrypt: false")

	out := tool(t, addr, "idevicebackup2", "backup", "--full", backups)
	assert.Contains(t, out, "Backup Successful")
	require.NoError(t, os.WriteFile(filepath.Join(phones, udid, "files", "HomeDomain", "changed.txt"), []byte("x"), 0o644))
	out = tool(t, addr, "idevicebackup2", "backup", backups)
	assert.Contains(t, out, "Backup Successful")
	assert.FileExists(t, filepath.Join(backups, udid, "Manifest.db"))
	// Across tools: our offline verify accepts idevicebackup2's backup.
	assert.Contains(t, mustRun(t, "verify", backups).stdout, ": OK")
	assert.Contains(t, mustRun(t, "ls", backups).stdout, "HomeDomain/changed.txt")

	// Restores across tools: theirs of our backup, ours of theirs.
	assert.Contains(t, tool(t, addr, "idevicebackup2", "restore", "--system", "--remove", backups), "Restore Successful")
	ours := t.TempDir()
	mustRun(t, "backup", "--usbmuxd", addr, ours)
	require.NoError(t, os.Remove(filepath.Join(phones, udid, "files", "HomeDomain", "changed.txt")))
	assert.Contains(t, tool(t, addr, "idevicebackup2", "restore", ours), "Restore Successful")
	assert.FileExists(t, filepath.Join(phones, udid, "files", "HomeDomain", "changed.txt"))
	assert.Contains(t, mustRun(t, "restore", "--usbmuxd", addr, backups).stdout, "restore complete")

	// Encryption across tools: their switch, their encrypted backup, our verify and restore.
	assert.Contains(t, tool(t, addr, "idevicebackup2", "encryption", "on", "pw1"), "enabled successfully")
	assert.Contains(t, tool(t, addr, "idevicebackup2", "changepw", "pw1", "pw2"), "changed successfully")
	enc := t.TempDir()
	assert.Contains(t, tool(t, addr, "idevicebackup2", "backup", "--full", enc), "Backup Successful")
	assert.Contains(t, mustRun(t, "verify", enc, "--password", "pw2").stdout, ": OK")
	assert.Contains(t, mustRun(t, "restore", "--usbmuxd", addr, enc, "--password", "pw2").stdout, "restore complete")
	assert.Contains(t, tool(t, addr, "idevicebackup2", "restore", "--password", "pw2", enc), "Restore Successful")
	assert.Contains(t, tool(t, addr, "idevicebackup2", "encryption", "off", "pw2"), "disabled successfully")

	// Our tool reads the pair record idevicepair stored through the daemon.
	r := mustRun(t, "info", "--usbmuxd", addr, "-k", "DeviceName")
	assert.Equal(t, "Test iPhone\n", r.stdout)
	assert.Contains(t, tool(t, addr, "idevicepair", "unpair"), "SUCCESS")
}
