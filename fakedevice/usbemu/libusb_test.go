//go:build libusb

// Tests of the emulated USB path with a real libusb host (gousb). They run
// only inside the emulated bus: run_tests.sh builds this file with
// `go test -c -tags libusb` and runs the binary under
// `umockdev-wrapper usbbus.py --socket S -- ./usbemu.test`, which sets
// USBEMU_BUS. libusb reaches the emulated /dev through libc, so the
// umockdev preload redirects it; Go's own os/net calls are not redirected.
package usbemu

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/gousb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testUDIDs are distinct so tests never pick up another test's phone.
const (
	udidEnum   = "00008030-001A2B3C4D5E6F70"
	udidStream = "00008101-000A11B22C33D44E"
)

// plugPhone connects a phone with udid to the emulated bus and unplugs it
// at test end. It skips the test outside the bus.
func plugPhone(t testing.TB, udid string, opts *Options) *Device {
	t.Helper()
	bus := os.Getenv("USBEMU_BUS")
	if bus == "" {
		t.Skip("USBEMU_BUS not set: run under usbbus.py (run_tests.sh)")
	}
	conn, err := net.Dial("unix", bus)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := Plug(ctx, conn, Identity{UDID: udid}, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// openHost waits for the phone with serial to appear and opens it.
func openHost(t testing.TB, ctx *gousb.Context, serial string) *gousb.Device {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		devs, err := ctx.OpenDevices(func(d *gousb.DeviceDesc) bool {
			return d.Vendor == VendorApple && d.Product == ProductIPhone
		})
		var found *gousb.Device
		for _, d := range devs {
			s, serr := d.SerialNumber()
			if serr == nil && s == serial && found == nil {
				found = d
				continue
			}
			_ = d.Close()
		}
		if found != nil {
			return found
		}
		require.True(t, time.Now().Before(deadline), "phone %s did not appear: %v", serial, err)
		time.Sleep(20 * time.Millisecond) // polling the bus; there is no event to wait on
	}
}

// versionRequest is the host's VERSION packet (§2.2): v1 header, 2.0.
func versionRequest() []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint32(b[4:], 20)
	binary.BigEndian.PutUint32(b[8:], 2)
	return b
}

// session returns the phone's current host session.
func session(t testing.TB, d *Device) *Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := d.Accept(ctx)
	require.NoError(t, err)
	return s
}

// answerVersion plays the device side of the handshake only.
func answerVersion(d *Session) {
	buf := make([]byte, maxTransfer)
	for {
		n, err := d.Read(buf)
		if err != nil {
			return
		}
		if n >= 8 && binary.BigEndian.Uint32(buf) == 0 {
			if _, err := d.Write(versionRequest()); err != nil {
				return
			}
		}
	}
}

func TestLibusbEnumerateAndHandshake(t *testing.T) {
	var mu sync.Mutex
	var events []Event
	d := plugPhone(t, udidEnum, &Options{OnEvent: func(e Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}})
	go answerVersion(session(t, d))

	ctx := gousb.NewContext()
	defer ctx.Close()
	serial, err := Serial(udidEnum)
	require.NoError(t, err)
	dev := openHost(t, ctx, serial)
	defer dev.Close()

	assert.Len(t, dev.Desc.Configs, NumConfigs)
	active, err := dev.ActiveConfigNum()
	require.NoError(t, err)
	assert.Equal(t, 1, active, "kernel's initial choice")
	c4 := dev.Desc.Configs[4]
	require.Len(t, c4.Interfaces, 3)
	alt := c4.Interfaces[MuxInterface].AltSettings[0]
	assert.Equal(t, gousb.ClassVendorSpec, alt.Class)
	assert.Equal(t, gousb.Class(0xFE), gousb.Class(alt.SubClass))
	assert.Equal(t, gousb.Protocol(2), alt.Protocol)
	for _, ep := range alt.Endpoints {
		assert.Equal(t, MaxPacket, ep.MaxPacketSize)
	}

	// Vendor GET_MODE (§1.3).
	mode := make([]byte, 4)
	n, err := dev.Control(0xC0, 0x45, 0, 0, mode)
	require.NoError(t, err)
	assert.Equal(t, []byte{3, 3, 3, 0}, mode[:n])

	cfg, err := dev.Config(4)
	require.NoError(t, err)
	defer cfg.Close()
	intf, err := cfg.Interface(MuxInterface, 0)
	require.NoError(t, err)
	defer intf.Close()
	out, err := intf.OutEndpoint(MuxOut)
	require.NoError(t, err)
	in, err := intf.InEndpoint(MuxIn & 0x7F)
	require.NoError(t, err)
	_, err = out.Write(versionRequest())
	require.NoError(t, err)
	buf := make([]byte, 16384)
	n, err = in.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, versionRequest(), buf[:n])

	mu.Lock()
	defer mu.Unlock()
	assert.Contains(t, events, Event{Kind: EventConfig, Value: 4})
	assert.Contains(t, events, Event{Kind: EventClaim, Value: MuxInterface})
	assert.Contains(t, events, Event{Kind: EventGetMode})
}

// TestLibusbTransferBoundaries checks the USB semantics the handler keeps:
// a device transfer that is a multiple of 512 bytes ends with a ZLP, and a
// host transfer of whole packets is glued to the next one unless the host
// sends a ZLP (§1.5, M-a.4).
func TestLibusbTransferBoundaries(t *testing.T) {
	d := session(t, plugPhone(t, udidStream, nil))
	ctx := gousb.NewContext()
	defer ctx.Close()
	serial, err := Serial(udidStream)
	require.NoError(t, err)
	dev := openHost(t, ctx, serial)
	defer dev.Close()
	intf, done, err := dev.DefaultInterface() // config 1 is active: no mux there
	require.NoError(t, err)
	assert.Equal(t, 0, intf.Setting.Number)
	done()
	cfg, err := dev.Config(4)
	require.NoError(t, err)
	defer cfg.Close()
	mux, err := cfg.Interface(MuxInterface, 0)
	require.NoError(t, err)
	defer mux.Close()
	out, err := mux.OutEndpoint(MuxOut)
	require.NoError(t, err)
	in, err := mux.InEndpoint(MuxIn & 0x7F)
	require.NoError(t, err)

	// Device → host: 1024 bytes, then 100; a 16384-byte read gets exactly
	// 1024 (the ZLP ended it), then 100.
	_, err = d.Write(make([]byte, 1024))
	require.NoError(t, err)
	_, err = d.Write(make([]byte, 100))
	require.NoError(t, err)
	buf := make([]byte, 16384)
	n, err := in.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, 1024, n)
	n, err = in.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, 100, n)

	// Host → device: 512 bytes without ZLP then 10 bytes arrive as one
	// transfer of 522; 512 + ZLP arrive alone.
	_, err = out.Write(make([]byte, 512))
	require.NoError(t, err)
	_, err = out.Write(make([]byte, 10))
	require.NoError(t, err)
	n, err = d.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, 522, n)
	_, err = out.Write(make([]byte, 512))
	require.NoError(t, err)
	_, err = out.Write(nil)
	require.NoError(t, err)
	n, err = d.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, 512, n)
}

// TestLibusbStreamThenUnplug streams device→host data with several IN
// transfers in flight, reports MB/s, then unplugs mid-stream: the host's
// read must fail, not hang.
func TestLibusbStreamThenUnplug(t *testing.T) {
	dev0 := plugPhone(t, "00008120-00FF00FF00FF00FF", nil)
	d := session(t, dev0)
	ctx := gousb.NewContext()
	defer ctx.Close()
	dev := openHost(t, ctx, "0000812000FF00FF00FF00FF")
	defer dev.Close()
	cfg, err := dev.Config(4)
	require.NoError(t, err)
	defer cfg.Close()
	mux, err := cfg.Interface(MuxInterface, 0)
	require.NoError(t, err)
	defer mux.Close()
	in, err := mux.InEndpoint(MuxIn & 0x7F)
	require.NoError(t, err)

	const total = 16 << 20
	pkt := make([]byte, 16000) // not a multiple of 512: no ZLPs
	go func() {
		for sent := 0; sent < total; sent += len(pkt) {
			if _, err := d.Write(pkt); err != nil {
				return
			}
		}
	}()
	stream, err := in.NewStream(16384, 3)
	require.NoError(t, err)
	buf := make([]byte, 16384)
	start := time.Now()
	got := 0
	for got < total-len(pkt) {
		n, err := stream.Read(buf)
		require.NoError(t, err)
		got += n
	}
	el := time.Since(start)
	report(t, "gousb_stream_MBps", float64(got)/el.Seconds()/1e6)

	// Unplug with transfers in flight: the stream must fail, not hang.
	require.NoError(t, dev0.Close())
	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rerr error
	for rerr == nil {
		_, rerr = stream.ReadContext(rctx, buf)
	}
	assert.False(t, errors.Is(rerr, context.DeadlineExceeded), "read after unplug hung: %v", rerr)
	t.Logf("read after unplug: %v", rerr)
	// Close and drain so gousb frees every transfer before the context
	// goes: a transfer left to its finalizer would cancel freed memory.
	require.NoError(t, stream.Close())
	for rerr = nil; rerr == nil; {
		_, rerr = stream.ReadContext(rctx, buf)
	}
}
