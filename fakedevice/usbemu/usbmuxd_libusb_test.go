//go:build libusb

// Debian's usbmuxd (an independent host implementation) against the
// emulated phone. The test starts the daemon itself, inside the emulated
// bus, so it needs root (the daemon's socket is /var/run/usbmuxd) and the
// usbmuxd package; it skips otherwise.
package usbemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ibackup/ibackup/usbmux/usbmuxd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const usbmuxdSocket = "/var/run/usbmuxd"

// startUsbmuxd runs `usbmuxd -f -v -p` (foreground, verbose, no preflight:
// the echo phone has no lockdownd) until the test ends, and returns a
// client for it. The daemon's log is printed if the test fails.
func startUsbmuxd(t testing.TB) *usbmuxd.Client {
	t.Helper()
	if os.Getenv("USBEMU_BUS") == "" {
		t.Skip("USBEMU_BUS not set: run under usbbus.py (run_tests.sh)")
	}
	if os.Geteuid() != 0 {
		t.Skip("usbmuxd needs root")
	}
	bin, err := exec.LookPath("usbmuxd")
	if err != nil {
		t.Skip("usbmuxd not installed")
	}
	if _, err := os.Stat(usbmuxdSocket); err == nil {
		t.Fatalf("%s exists: another usbmuxd is running", usbmuxdSocket)
	}
	var logBuf bytes.Buffer
	cmd := exec.Command(bin, "-f", "-v", "-p")
	// If this test binary dies, the daemon must not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			assert.NoError(t, err, "usbmuxd exit after SIGINT")
		case <-time.After(5 * time.Second):
			t.Error("usbmuxd ignored SIGINT for 5 s (busy loop?)")
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = os.Remove(usbmuxdSocket)
		_ = os.Remove("/var/run/usbmuxd.pid")
		if t.Failed() {
			t.Logf("usbmuxd log:\n%s", logBuf.String())
		}
	})
	waitFor(t, 5*time.Second, "usbmuxd socket", func() bool {
		_, err := os.Stat(usbmuxdSocket)
		return err == nil
	})
	c, err := usbmuxd.NewClient(usbmuxdSocket, nil)
	require.NoError(t, err)
	return c
}

// waitFor polls cond (there is no event to wait on across processes).
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
		time.Sleep(20 * time.Millisecond)
	}
}

// plugEchoPhone plugs a mux-only phone whose every host session is served
// by devmux with the echo and source services; unplug it with the returned
// Device's Close.
func plugEchoPhone(t testing.TB, udid string, opts *Options) *Device {
	t.Helper()
	d := plugPhone(t, udid, opts)
	served := make(chan struct{})
	go func() {
		defer close(served)
		for {
			s, err := d.Accept(context.Background())
			if err != nil {
				return
			}
			_ = ServeTestServices(context.Background(), s)
		}
	}()
	t.Cleanup(func() {
		_ = d.Close()
		<-served
	})
	return d
}

// listed reports whether the daemon lists udid.
func listed(ctx context.Context, c *usbmuxd.Client, udid string) bool {
	devs, err := c.Devices(ctx)
	if err != nil {
		return false
	}
	for _, d := range devs {
		if d.UDID == udid {
			return true
		}
	}
	return false
}

// readSource asks the source service on conn for n bytes and checks them;
// it returns how many arrived and the error that ended the stream.
func readSource(conn net.Conn, n int64) (int64, error) {
	if _, err := fmt.Fprintf(conn, "%d\n", n); err != nil {
		return 0, err
	}
	buf := make([]byte, 64<<10)
	want := make([]byte, len(buf))
	var got int64
	for got < n {
		k, err := conn.Read(buf)
		if k > 0 {
			Pattern(want[:k], got)
			if !bytes.Equal(buf[:k], want[:k]) {
				return got, fmt.Errorf("data mismatch at offset %d", got)
			}
			got += int64(k)
		}
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

func TestUsbmuxdAttachEchoSourceDetach(t *testing.T) {
	const udid = "00008110-0011223344556677"
	c := startUsbmuxd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d := plugEchoPhone(t, udid, nil)
	waitFor(t, 10*time.Second, "usbmuxd to list the phone", func() bool { return listed(ctx, c, udid) })

	// Echo through usbmuxd's socket, the mux and devmux.
	conn, err := c.ConnectUDID(ctx, udid, EchoPort)
	require.NoError(t, err)
	msg := make([]byte, 300<<10)
	_, _ = rand.Read(msg)
	go func() { _, _ = conn.Write(msg) }()
	back := make([]byte, len(msg))
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	_, err = io.ReadFull(conn, back)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(msg, back), "echo mismatch")
	require.NoError(t, conn.Close())

	// A closed port is refused.
	_, err = c.ConnectUDID(ctx, udid, 1)
	assert.Error(t, err)

	// Device → host stream through usbmuxd, timed.
	const size = 8 << 20
	conn, err = c.ConnectUDID(ctx, udid, SourcePort)
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
	start := time.Now()
	got, err := readSource(conn, size)
	require.NoError(t, err)
	el := time.Since(start)
	require.NoError(t, conn.Close())
	report(t, "usbmuxd_source_MBps", float64(got)/el.Seconds()/1e6)

	// Unplug mid-stream: the client's stream ends early and the daemon
	// drops the phone.
	conn, err = c.ConnectUDID(ctx, udid, SourcePort)
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	result := make(chan error, 1)
	var n int64
	go func() {
		var err error
		n, err = readSource(conn, 1<<30)
		result <- err
	}()
	time.Sleep(200 * time.Millisecond) // let the stream run before pulling the cable
	require.NoError(t, d.Close())
	err = <-result
	assert.Error(t, err)
	assert.False(t, errors.Is(err, os.ErrDeadlineExceeded), "stream hung after unplug: %v", err)
	assert.Less(t, n, int64(1<<30))
	t.Logf("stream ended after %d bytes with %v", n, err)
	waitFor(t, 10*time.Second, "usbmuxd to drop the phone", func() bool { return !listed(ctx, c, udid) })
}

// report logs a measurement in a form run_tests.sh collects.
func report(t testing.TB, name string, v float64) {
	t.Helper()
	t.Logf("METRIC %s %s", name, strconv.FormatFloat(v, 'f', 2, 64))
}
