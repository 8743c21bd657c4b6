package usbemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// maxDeviceTransfer is the largest device→host mux packet a host accepts
// (DEV_MRU, usb-usbmux-lockdown.md §1.5 and §2.6).
const maxDeviceTransfer = 65536

// ConnectFunc returns the host end of a fresh link to the phone, as
// fakedevice's (*Device).Connect does: its Read yields one device→host
// transfer, its Write delivers one host→device transfer, and closing it
// stops the phone's side of that link.
type ConnectFunc func(ctx context.Context) (Link, error)

// ServeUSB plugs a phone into the bus over conn and serves it until ctx is
// cancelled (which unplugs it), the bus unplugs it, or a phone link fails.
// Every host session (see Device) gets its own link from connect, so a
// host that starts over meets a phone whose mux starts over too. Each
// transfer the phone link yields goes to the host as one USB transfer.
//
// It returns nil when ctx was cancelled, an error wrapping ErrUnplugged
// when the bus unplugged the phone, and the phone link's error otherwise.
// conn is closed when ServeUSB returns.
func ServeUSB(ctx context.Context, conn net.Conn, id Identity, connect ConnectFunc, opts *Options) error {
	d, err := Plug(ctx, conn, id, opts)
	if err != nil {
		_ = conn.Close()
		return err
	}
	defer d.Close()
	unwatch := context.AfterFunc(ctx, func() { _ = d.Close() })
	defer unwatch()
	for {
		s, err := d.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		phone, err := connect(ctx)
		if err != nil {
			_ = s.Close()
			return fmt.Errorf("usbemu: connecting the phone: %w", err)
		}
		err = carry(s, phone)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errHostRestarted):
			continue // next session, fresh phone link
		default:
			return err
		}
	}
}

// errHostRestarted ends carry when the host started the mux over.
var errHostRestarted = errors.New("usbemu: host started the mux over")

// carry pumps transfers between session s and the phone link until either
// ends, then closes both. It returns errHostRestarted when the host
// started over.
func carry(s *Session, phone Link) error {
	var (
		once  sync.Once
		cause error
	)
	stop := func(err error) {
		once.Do(func() {
			cause = err
			_ = s.Close()
			_ = phone.Close()
		})
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // host → phone
		defer wg.Done()
		buf := make([]byte, maxTransfer)
		for {
			n, err := s.Read(buf)
			if err == io.EOF {
				err = errHostRestarted
			}
			if err != nil {
				stop(err)
				return
			}
			if _, err := phone.Write(buf[:n]); err != nil {
				stop(fmt.Errorf("usbemu: phone link write: %w", err))
				return
			}
		}
	}()
	go func() { // phone → host
		defer wg.Done()
		buf := make([]byte, maxDeviceTransfer)
		for {
			n, err := phone.Read(buf)
			if err != nil {
				stop(fmt.Errorf("usbemu: phone link read: %w", err))
				return
			}
			if _, err := s.Write(buf[:n]); err != nil {
				stop(err)
				return
			}
		}
	}()
	wg.Wait()
	return cause
}
