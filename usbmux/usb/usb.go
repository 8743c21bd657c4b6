//go:build libusb

package usb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/gousb"
)

// DeviceInfo describes an attached mux device.
type DeviceInfo struct {
	UDID       string // serial with the hyphen rule applied (§1.2)
	Serial     string // raw USB serial string
	Bus        int
	Address    int
	LocationID uint32 // bus<<16 | address (Linux usbmuxd)
	ProductID  uint16
	SpeedBits  int64 // ConnectionSpeed in bit/s (§1.5)
}

type devKey struct{ bus, addr int }

// Context is a libusb session that finds and opens mux devices. Close it when done; it must not
// be closed while Links opened from it are still open.
type Context struct {
	ctx *gousb.Context

	mu     sync.Mutex
	open   map[devKey]*Link
	failed map[devKey]bool // devices whose last open failed; their error is reported once
}

// NewContext opens a libusb context.
func NewContext() *Context {
	return &Context{ctx: gousb.NewContext(), open: make(map[devKey]*Link), failed: make(map[devKey]bool)}
}

// Close closes the libusb context.
func (c *Context) Close() error {
	if err := c.ctx.Close(); err != nil {
		return fmt.Errorf("usb: closing libusb context: %w", err)
	}
	return nil
}

// speedBits maps the negotiated speed to usbmuxd's ConnectionSpeed; unknown speeds (gousb has
// no SuperSpeed+ constant) count as high speed, as in usbmuxd 1.1.1 (corrections.md V4).
func speedBits(s gousb.Speed) int64 {
	switch s {
	case gousb.SpeedLow:
		return 1_500_000
	case gousb.SpeedFull:
		return 12_000_000
	case gousb.SpeedSuper:
		return 5_000_000_000
	}
	return 480_000_000
}

// configInfos converts gousb descriptors into the pure form ChooseConfig takes.
func configInfos(desc *gousb.DeviceDesc) []ConfigInfo {
	out := make([]ConfigInfo, 0, len(desc.Configs))
	for num, cd := range desc.Configs {
		ci := ConfigInfo{Number: num}
		for _, intf := range cd.Interfaces {
			if len(intf.AltSettings) == 0 {
				continue
			}
			alt := intf.AltSettings[0]
			s := Setting{Interface: intf.Number, Class: uint8(alt.Class), SubClass: uint8(alt.SubClass),
				Protocol: uint8(alt.Protocol)}
			for _, ep := range alt.Endpoints {
				s.Endpoints = append(s.Endpoints, Endpoint{Address: uint8(ep.Address),
					Bulk: ep.TransferType == gousb.TransferTypeBulk, MaxPacket: ep.MaxPacketSize})
			}
			ci.Interfaces = append(ci.Interfaces, s)
		}
		out = append(out, ci)
	}
	return out
}

func isMux(desc *gousb.DeviceDesc) bool {
	return desc.Vendor == AppleVendor && IsMuxProduct(uint16(desc.Product))
}

// OpenAll opens every attached mux device that is not open yet through this Context. Devices
// that fail to open are reported in the joined error; the others are still returned.
func (c *Context) OpenAll() ([]*Link, error) {
	links, _, err := c.scan()
	return links, err
}

// scan enumerates the bus once: it opens new mux devices and returns the keys of all mux
// devices seen.
func (c *Context) scan() ([]*Link, map[devKey]bool, error) {
	seen := make(map[devKey]bool)
	devs, err := c.ctx.OpenDevices(func(desc *gousb.DeviceDesc) bool {
		if !isMux(desc) {
			return false
		}
		k := devKey{desc.Bus, desc.Address}
		seen[k] = true
		c.mu.Lock()
		_, known := c.open[k]
		c.mu.Unlock()
		return !known
	})
	var errs []error
	if err != nil {
		errs = append(errs, fmt.Errorf("usb: enumerating devices: %w", err))
	}
	var links []*Link
	for _, d := range devs {
		k := devKey{d.Desc.Bus, d.Desc.Address}
		l, err := c.openLink(d)
		c.mu.Lock()
		repeated := c.failed[k]
		c.failed[k] = err != nil
		c.mu.Unlock()
		if err != nil {
			_ = d.Close()
			if !repeated {
				errs = append(errs, err)
			}
			continue
		}
		links = append(links, l)
	}
	c.mu.Lock()
	for k := range c.failed {
		if !seen[k] {
			delete(c.failed, k)
		}
	}
	c.mu.Unlock()
	return links, seen, errors.Join(errs...)
}

// openLink claims the mux interface of d: serial → UDID, configuration choice (set it and
// detach kernel drivers if needed), claim, endpoints, and the read stream (§1.2, §1.4, §1.5).
func (c *Context) openLink(d *gousb.Device) (*Link, error) {
	desc := d.Desc
	info := DeviceInfo{Bus: desc.Bus, Address: desc.Address, LocationID: LocationID(desc.Bus, desc.Address),
		ProductID: uint16(desc.Product), SpeedBits: speedBits(desc.Speed)}
	d.ControlTimeout = time.Second
	serial, err := d.SerialNumber()
	if err != nil {
		return nil, fmt.Errorf("usb: %d-%d: reading serial number: %w", desc.Bus, desc.Address, err)
	}
	info.Serial, info.UDID = serial, UDIDFromSerial(serial)
	choice, ok := ChooseConfig(configInfos(desc))
	if !ok {
		return nil, fmt.Errorf("usb: %s: no configuration with a usbmux interface (FF/FE/02)", info.UDID)
	}
	if err := d.SetAutoDetach(true); err != nil {
		return nil, fmt.Errorf("usb: %s: enabling kernel driver detach: %w", info.UDID, err)
	}
	cfg, err := d.Config(choice.Config) // sets the configuration only if it differs
	if err != nil {
		return nil, fmt.Errorf("usb: %s: configuration %d: %w", info.UDID, choice.Config, err)
	}
	l := &Link{c: c, key: devKey{desc.Bus, desc.Address}, info: info, dev: d, cfg: cfg, maxPacket: choice.Out.MaxPacket}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	fail := func(err error) (*Link, error) {
		l.release()
		return nil, fmt.Errorf("usb: %s: %w", info.UDID, err)
	}
	if l.intf, err = cfg.Interface(choice.Interface, 0); err != nil {
		return fail(fmt.Errorf("claiming interface %d: %w", choice.Interface, err))
	}
	if l.out, err = l.intf.OutEndpoint(choice.Out.Number()); err != nil {
		return fail(fmt.Errorf("OUT endpoint %#02x: %w", choice.Out.Address, err))
	}
	in, err := l.intf.InEndpoint(choice.In.Number())
	if err != nil {
		return fail(fmt.Errorf("IN endpoint %#02x: %w", choice.In.Address, err))
	}
	if l.in, err = in.NewStream(ReadSize, ReadsQueued); err != nil {
		return fail(fmt.Errorf("starting reads: %w", err))
	}
	c.mu.Lock()
	c.open[l.key] = l
	c.mu.Unlock()
	return l, nil
}

// Event is a hot-plug event from Watch. An attach carries the opened Link, or Err when a
// device was seen but could not be opened; opening is retried at every poll, but the error of
// a device is reported only once until it succeeds or the device goes away.
type Event struct {
	Attached bool
	Info     DeviceInfo
	Link     *Link
	Err      error
}

// Watch polls the device list every interval (usbmuxd's fallback of 1000 ms when hot-plug
// callbacks are unavailable, §1.1) and calls fn for every mux device that appears or
// disappears, until ctx ends. Devices already open through this Context are not reported
// again. fn runs on Watch's goroutine.
func (c *Context) Watch(ctx context.Context, interval time.Duration, fn func(Event)) error {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		links, seen, err := c.scan()
		for _, l := range links {
			fn(Event{Attached: true, Info: l.info, Link: l})
		}
		if err != nil {
			fn(Event{Attached: true, Err: err})
		}
		c.mu.Lock()
		var gone []*Link
		for k, l := range c.open {
			if !seen[k] {
				gone = append(gone, l)
			}
		}
		c.mu.Unlock()
		for _, l := range gone {
			c.forget(l)
			fn(Event{Attached: false, Info: l.info, Link: l})
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}

func (c *Context) forget(l *Link) {
	c.mu.Lock()
	if c.open[l.key] == l {
		delete(c.open, l.key)
	}
	c.mu.Unlock()
}
