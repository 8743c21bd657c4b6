package usbmuxd

import (
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseAddress(t *testing.T) {
	for in, want := range map[string][2]string{
		"UNIX:/var/run/usbmuxd": {"unix", "/var/run/usbmuxd"},
		"/var/run/usbmuxd":      {"unix", "/var/run/usbmuxd"},
		"relative.sock":         {"unix", "relative.sock"},
		"127.0.0.1:27015":       {"tcp", "127.0.0.1:27015"},
		"localhost:27015":       {"tcp", "localhost:27015"},
		"[::1]:27015":           {"tcp", "[::1]:27015"},
	} {
		n, a, err := ParseAddress(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, [2]string{n, a}, in)
	}
	for _, bad := range []string{"", "UNIX:", "host:", "host:0", "host:70000", "host:12x", "::1:27015"} {
		_, _, err := ParseAddress(bad)
		assert.Error(t, err, bad)
	}
}

func TestListenUnix(t *testing.T) {
	dir := shortTempDir(t)
	path := filepath.Join(dir, "usbmuxd")

	// A stale socket file (its daemon died) is replaced.
	stale, err := net.Listen("unix", path)
	require.NoError(t, err)
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, stale.Close())

	l, err := Listen("UNIX:" + path)
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o666), fi.Mode().Perm(), "world-accessible like usbmuxd's socket")

	// A live daemon is not displaced.
	_, err = Listen(path)
	assert.ErrorContains(t, err, "another daemon")
	require.NoError(t, l.Close())

	// Never remove a file that is not a socket.
	require.NoError(t, os.WriteFile(path, []byte("x"), 0o600))
	_, err = Listen(path)
	assert.ErrorContains(t, err, "not a socket")
}

func TestListenTCP(t *testing.T) {
	l, err := Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	assert.Equal(t, "tcp", l.Addr().Network())
}

// TestDistFiles checks the udev rule's product match against §1.1 and that
// the unit runs the daemon on usbmuxd's socket.
func TestDistFiles(t *testing.T) {
	rule, err := os.ReadFile("dist/39-ibackup-usbmux.rules")
	require.NoError(t, err)
	const pattern = "5ac/12[9a][0-9a-f]/*"
	assert.Contains(t, string(rule), `ENV{PRODUCT}=="`+pattern+`"`)
	for pid := 0x1200; pid <= 0x1300; pid++ {
		ok, err := path.Match(pattern, fmt.Sprintf("5ac/%x/1000", pid))
		require.NoError(t, err)
		assert.Equal(t, pid >= 0x1290 && pid <= 0x12AF, ok, "product %#x", pid)
	}
	unit, err := os.ReadFile("dist/ibackup-usbmuxd.service")
	require.NoError(t, err)
	assert.Contains(t, string(unit), "ExecStart=/usr/local/bin/ibackup usbmuxd --socket "+DefaultSocket+"\n")
}
