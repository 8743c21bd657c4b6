//go:build libusb

// Our own host stack over the emulated USB path: the gousb adapter
// (usbmux/usb) finds the phone, picks the configuration and claims the mux
// interface, usbmux runs the handshake, and mux connections carry data
// both ways to devmux on the phone. The same emulated phone is then timed
// through Debian's usbmuxd for the throughput ratio of issue 12 item 3.
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
	"sync"
	"testing"
	"time"

	"github.com/ibackup/ibackup/usbmux"
	"github.com/ibackup/ibackup/usbmux/usb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// openOurHost waits until the adapter finds and opens the phone with udid.
func openOurHost(t testing.TB, c *usb.Context, udid string) *usb.Link {
	t.Helper()
	var found *usb.Link
	waitFor(t, 10*time.Second, "the adapter to open "+udid, func() bool {
		links, err := c.OpenAll() // devices of other tests may fail to open; only ours matters
		if err != nil {
			t.Logf("OpenAll: %v", err)
		}
		for _, l := range links {
			if l.Info().UDID == udid && found == nil {
				found = l
				continue
			}
			_ = l.Close()
		}
		return found != nil
	})
	return found
}

// recordEvents collects the bus events a phone sees.
type recordEvents struct {
	mu sync.Mutex
	ev []Event
}

func (r *recordEvents) add(e Event) {
	r.mu.Lock()
	r.ev = append(r.ev, e)
	r.mu.Unlock()
}

func (r *recordEvents) list() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.ev...)
}

// timeSource reads n bytes from the source service over dial and returns MB/s.
func timeSource(t testing.TB, dial func() (net.Conn, error), n int64) float64 {
	t.Helper()
	conn, err := dial()
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(60*time.Second)))
	start := time.Now()
	got, err := readSource(conn, n)
	require.NoError(t, err)
	require.Equal(t, n, got)
	return float64(got) / time.Since(start).Seconds() / 1e6
}

func TestOurHostOverUSB(t *testing.T) {
	const udid = "00008101-0001020304050607"
	var rec recordEvents
	d := plugEchoPhone(t, udid, &Options{OnEvent: rec.add})
	c := usb.NewContext()
	defer c.Close()
	link := openOurHost(t, c, udid)
	info := link.Info()
	assert.Equal(t, "000081010001020304050607", info.Serial)
	assert.EqualValues(t, 480_000_000, info.SpeedBits)
	assert.Equal(t, uint32(1<<16|info.Address), info.LocationID)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, err := usbmux.NewMux(ctx, link, nil)
	require.NoError(t, err)
	defer m.Close()
	assert.Contains(t, rec.list(), Event{Kind: EventConfig, Value: 4}, "highest configuration with the mux interface")
	assert.Contains(t, rec.list(), Event{Kind: EventClaim, Value: MuxInterface})

	// Both directions at once through one mux connection.
	conn, err := m.Dial(ctx, EchoPort)
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
	msg := make([]byte, 2<<20)
	_, _ = rand.Read(msg)
	werr := make(chan error, 1)
	go func() { _, err := conn.Write(msg); werr <- err }()
	back := make([]byte, len(msg))
	_, err = io.ReadFull(conn, back)
	require.NoError(t, err)
	require.NoError(t, <-werr)
	assert.True(t, bytes.Equal(msg, back), "echo over USB mismatched")
	require.NoError(t, conn.Close())

	// A closed port is refused.
	_, err = m.Dial(ctx, 1)
	assert.Error(t, err)

	// Device → host, timed.
	mbps := timeSource(t, func() (net.Conn, error) { return m.Dial(ctx, SourcePort) }, 16<<20)
	report(t, "ours_source_MBps", mbps)

	// Unplug mid-stream: the stream and the mux end with an error.
	conn, err = m.Dial(ctx, SourcePort)
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
	require.Error(t, err)
	assert.False(t, errors.Is(err, os.ErrDeadlineExceeded), "stream hung after unplug: %v", err)
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("mux did not end after unplug")
	}
	t.Logf("after %d bytes: conn error %q; mux cause %q", n, err, m.Wait())
	assert.Error(t, m.Wait())
	_ = link.Close()
}

// TestThroughputRatio times the same emulated phone through our host and
// through Debian's usbmuxd in one run (issue 12 item 3, with the byte
// source; run_tests.sh times whole backups the same way).
func TestThroughputRatio(t *testing.T) {
	ours, theirs := throughput(t, "00008101-0A0B0C0D0E0F1011")
	report(t, "ours_MBps", ours)
	report(t, "usbmuxd_MBps", theirs)
	report(t, "ours_over_usbmuxd", ours/theirs)
}

// BenchmarkThroughputRatio is TestThroughputRatio as a benchmark: run it
// inside the bus with -test.bench ThroughputRatio -test.benchtime 1x.
func BenchmarkThroughputRatio(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		ours, theirs := throughput(b, fmt.Sprintf("00008101-0A0B0C0D0E0F%04X", 0x2000+i))
		b.ReportMetric(ours, "ours-MB/s")
		b.ReportMetric(theirs, "usbmuxd-MB/s")
		b.ReportMetric(ours/theirs, "ours/usbmuxd")
	}
}

// throughput plugs an echo phone, reads 8 MiB from its source service
// through our host, then starts usbmuxd and does the same through it.
func throughput(t testing.TB, udid string) (ours, theirs float64) {
	const size = 8 << 20
	plugEchoPhone(t, udid, nil)
	c := usb.NewContext()
	link := openOurHost(t, c, udid)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, err := usbmux.NewMux(ctx, link, nil)
	require.NoError(t, err)
	ours = timeSource(t, func() (net.Conn, error) { return m.Dial(ctx, SourcePort) }, size)
	require.NoError(t, m.Close())
	require.NoError(t, link.Close())
	require.NoError(t, c.Close())

	mc := startUsbmuxd(t)
	waitFor(t, 10*time.Second, "usbmuxd to list the phone", func() bool { return listed(ctx, mc, udid) })
	theirs = timeSource(t, func() (net.Conn, error) { return mc.ConnectUDID(ctx, udid, SourcePort) }, size)
	return ours, theirs
}
