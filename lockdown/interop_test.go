//go:build interop

// Interop with Debian's libimobiledevice tools (idevicepair, ideviceinfo)
// through our usbmuxd Server, against the fake lockdownd over the USB mux.
// Run with: go test -tags interop -run Interop ./lockdown/
package lockdown_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/lockdown"
	"github.com/ibackup/ibackup/usbmux/usbmuxd"
)

// oneDevice is a usbmuxd.Source with one attached device reached through d.
type oneDevice struct{ d lockdown.Dialer }

func (o oneDevice) Watch(ctx context.Context) ([]usbmuxd.Device, <-chan usbmuxd.Event) {
	ch := make(chan usbmuxd.Event)
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return []usbmuxd.Device{{ID: 1, UDID: testUDID, ProductID: 0x12a8}}, ch
}

func (o oneDevice) Dial(ctx context.Context, id uint32, port uint16) (net.Conn, error) {
	return o.d.Dial(ctx, port)
}

func TestInteropLibimobiledevice(t *testing.T) {
	if _, err := exec.LookPath("idevicepair"); err != nil {
		t.Skip("idevicepair not installed")
	}
	d := startDevice(t, nil)
	// Our store and usbmuxd's records share one directory (§4.1).
	recDir := d.store.Dir.Path
	require.NoError(t, os.MkdirAll(recDir, 0o700))
	srv := usbmuxd.NewServer(oneDevice{d.dial}, &usbmuxd.Options{Records: d.store.Dir})
	sock := filepath.Join(t.TempDir(), "usbmuxd.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ctx, ln)
	}()
	defer func() {
		cancel()
		ln.Close()
		srv.Close()
		<-done
	}()

	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS=UNIX:"+sock)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%v: %s", args, out)
		t.Logf("%v:\n%s", args, firstLines(string(out), 4))
		return string(out)
	}

	out := run("idevicepair", "-u", testUDID, "pair")
	assert.Contains(t, out, "SUCCESS")
	out = run("idevicepair", "-u", testUDID, "validate")
	assert.Contains(t, out, "SUCCESS")
	out = run("ideviceinfo", "-u", testUDID)
	assert.Contains(t, out, "ProductVersion: 17.5.1")
	assert.Contains(t, out, "BasebandVersion: 3.50.03", "full dump inside the session")
	out = run("ideviceinfo", "-u", testUDID, "-k", "ProductVersion")
	assert.Equal(t, "17.5.1", strings.TrimSpace(out))
	out = run("ideviceinfo", "-u", testUDID, "-q", "com.apple.mobile.backup")
	assert.Contains(t, out, "WillEncrypt: false")

	// A record written by idevicepair (through usbmuxd) works for our client.
	cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer ccancel()
	c, err := lockdown.Connect(cctx, d.dial, testUDID, d.store, &lockdown.ConnectOptions{Client: *d.opts(t), Pair: lockdown.PairNever})
	require.NoError(t, err)
	conn, err := c.StartService(cctx, d.dial, "com.apple.mobilebackup2", true)
	require.NoError(t, err, "EscrowBag from idevicepair's Pair reply")
	conn.Close()
	require.NoError(t, c.Close())

	out = run("idevicepair", "-u", testUDID, "unpair")
	assert.Contains(t, out, "SUCCESS")
	assert.Empty(t, d.srv.PairedHosts())

	// And a record written by our client works for ideviceinfo.
	c, err = lockdown.Connect(cctx, d.dial, testUDID, d.store, &lockdown.ConnectOptions{Client: *d.opts(t)})
	require.NoError(t, err)
	require.NoError(t, c.Close())
	out = run("ideviceinfo", "-u", testUDID, "-k", "DeviceName")
	assert.Equal(t, "Test iPhone", strings.TrimSpace(out))
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
