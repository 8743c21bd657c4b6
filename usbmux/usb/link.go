//go:build libusb

package usb

import (
	"context"
	"fmt"
	"sync"

	"github.com/google/gousb"
)

// Link is an open mux interface of one device; it implements usbmux.Link. Read and Write may
// run concurrently with each other; Close unblocks both.
type Link struct {
	c         *Context
	key       devKey
	info      DeviceInfo
	dev       *gousb.Device
	cfg       *gousb.Config
	intf      *gousb.Interface
	out       *gousb.OutEndpoint
	in        *gousb.ReadStream
	maxPacket int
	ctx       context.Context
	cancel    context.CancelFunc

	rmu, wmu  sync.Mutex
	closeOnce sync.Once
}

// Info describes the device.
func (l *Link) Info() DeviceInfo { return l.info }

// Read returns the data of one completed bulk-IN transfer of up to 16 KiB (three are kept in
// flight); a zero-length transfer gives (0, nil). Give it at least ReadSize bytes of room.
// Any transfer error (stall, no device, overflow) means the device is gone (§1.5).
func (l *Link) Read(p []byte) (int, error) {
	l.rmu.Lock()
	defer l.rmu.Unlock()
	if l.in == nil {
		return 0, fmt.Errorf("usb: %s: read on closed link", l.info.UDID)
	}
	n, err := l.in.ReadContext(l.ctx, p)
	if err != nil {
		return n, fmt.Errorf("usb: %s: bulk IN: %w", l.info.UDID, err)
	}
	return n, nil
}

// Write sends p as one bulk-OUT transfer, without timeout, followed by a zero-length packet when
// len(p) is a multiple of wMaxPacketSize (§1.5).
func (l *Link) Write(p []byte) (int, error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.out == nil {
		return 0, fmt.Errorf("usb: %s: write on closed link", l.info.UDID)
	}
	n, err := l.out.WriteContext(l.ctx, p)
	if err != nil {
		return n, fmt.Errorf("usb: %s: bulk OUT: %w", l.info.UDID, err)
	}
	if NeedsZLP(len(p), l.maxPacket) {
		if _, err := l.out.WriteContext(l.ctx, nil); err != nil {
			return n, fmt.Errorf("usb: %s: zero-length packet: %w", l.info.UDID, err)
		}
	}
	return n, nil
}

// Close cancels pending transfers, releases the interface and closes the device.
func (l *Link) Close() error {
	l.closeOnce.Do(func() {
		l.cancel()
		l.c.forget(l)
		l.release()
	})
	return nil
}

// release frees everything opened so far; transfers must already be cancelled or never started.
func (l *Link) release() {
	l.cancel()
	l.rmu.Lock()
	if l.in != nil {
		// Close only stops resubmission; a read with the cancelled context then cancels and
		// reaps the transfers still in flight.
		_ = l.in.Close()
		buf := make([]byte, ReadSize)
		for range 2*ReadsQueued + 1 {
			if _, err := l.in.ReadContext(l.ctx, buf); err != nil {
				break
			}
		}
		l.in = nil
	}
	l.rmu.Unlock()
	l.wmu.Lock()
	l.out = nil
	l.wmu.Unlock()
	if l.intf != nil {
		l.intf.Close()
	}
	if l.cfg != nil {
		_ = l.cfg.Close()
	}
	_ = l.dev.Close()
}
