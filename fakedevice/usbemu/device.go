package usbemu

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Link is one USB mux pipe: bulk transfers only. It has the method set of
// usbmux.Link, so a Session can be handed to fakedevice/devmux and any
// usbmux.Link to ServeUSB.
type Link interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	Close() error
}

// ErrUnplugged is returned once the phone is off the bus: the bus closed
// the connection (the harness unplugged it) or Device.Close was called.
var ErrUnplugged = errors.New("usbemu: device unplugged")

// ErrSessionEnded is returned by Write on a Session after the host started
// the mux over: its data must not reach the new host session.
var ErrSessionEnded = errors.New("usbemu: mux session ended")

// maxTransfer bounds one host→device transfer the device assembles: a
// host that never ends a transfer with a short packet gets it cut here.
// Larger than the largest legal mux packet (49152, §1.5).
const maxTransfer = 65536

// Options configure a Device. The zero value is usable.
type Options struct {
	// OnEvent, if set, is called from the Device's reader goroutine for
	// every event the bus reports. It must not block.
	OnEvent func(Event)
}

// Device is a phone plugged into the bus. The host side of its mux comes
// as Sessions: the first exists from plug time, and every time a host
// starts the mux over with a new VERSION packet (usbmuxd restarted, or
// another host program took the phone) the current session ends and a new
// one begins, the way the phone's own mux daemon starts over. A USB device
// sees no "claim" or "close" from the host, only the packets (§2.2), so
// the VERSION packet is the one signal there is.
//
// One reader goroutine owns the connection's read side: it assembles OUT
// URBs into transfers and routes them to the current session. Writes hold
// wmu, which also guards cur.
type Device struct {
	conn net.Conn
	opts Options

	sessions chan *Session // new sessions for Accept, from the reader goroutine
	quit     chan struct{} // closed by Close
	done     chan struct{} // closed when the reader goroutine has ended
	err      error         // why the reader ended; written before done closes

	wmu  sync.Mutex // one frame write at a time; guards cur and wbuf
	cur  *Session
	wbuf []byte

	closeOnce sync.Once
}

// Plug sends the Hello for id over conn (a connection to the bus) and
// returns the plugged-in Device. The Device owns conn from now on.
func Plug(ctx context.Context, conn net.Conn, id Identity, opts *Options) (*Device, error) {
	h, err := NewHello(id)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("usbemu: hello: %w", err)
	}
	frame, err := AppendFrame(nil, Frame{Type: FrameHello, Payload: body})
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetWriteDeadline(dl); err != nil {
			return nil, fmt.Errorf("usbemu: plug: %w", err)
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	_, werr := conn.Write(frame)
	if !stop() {
		return nil, fmt.Errorf("usbemu: plug: %w", ctx.Err())
	}
	if werr != nil {
		return nil, fmt.Errorf("usbemu: plug: %w", werr)
	}
	if err := conn.SetWriteDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("usbemu: plug: %w", err)
	}
	d := &Device{conn: conn, sessions: make(chan *Session, 1), quit: make(chan struct{}), done: make(chan struct{})}
	if opts != nil {
		d.opts = *opts
	}
	first := d.newSession()
	d.sessions <- first
	go d.readLoop(first)
	return d, nil
}

// isVersion reports whether t is the host's VERSION packet: protocol 0 in
// the v1 header it always uses, length matching (§2.2).
func isVersion(t []byte) bool {
	return len(t) >= 16 && binary.BigEndian.Uint32(t) == 0 && int(binary.BigEndian.Uint32(t[4:])) == len(t)
}

// readLoop owns the read side of conn. It assembles OUT URBs into
// transfers: a URB whose length is not a multiple of MaxPacket ends in a
// short packet and so ends the transfer, a ZLP ends it too, and a URB of
// whole packets continues it (usb-usbmux-lockdown.md §1.5: the device
// "glues packets together" without the host's ZLP).
func (d *Device) readLoop(cur *Session) {
	defer close(d.done)
	started := false // cur has seen a VERSION
	var t []byte
	for {
		f, err := ReadFrame(d.conn)
		if err != nil {
			d.err = ErrUnplugged
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				d.err = fmt.Errorf("%w: %w", ErrUnplugged, err)
			}
			cur.end(d.err)
			return
		}
		switch f.Type {
		case FrameOut:
			t = append(t, f.Payload...)
			if len(f.Payload)%MaxPacket == 0 && len(f.Payload) > 0 && len(t) < maxTransfer {
				continue // no short packet yet: the transfer goes on
			}
			if len(t) == 0 {
				continue // a ZLP alone completes an empty read; nothing to deliver
			}
			if isVersion(t) {
				if started {
					cur.end(io.EOF)
					cur = d.newSession()
					select {
					case d.sessions <- cur:
					case <-d.quit:
						d.err = ErrUnplugged
						cur.end(d.err)
						return
					}
				}
				started = true
			}
			select {
			case cur.in <- t:
			case <-cur.closed:
			case <-d.quit:
				d.err = ErrUnplugged
				cur.end(d.err)
				return
			}
			t = nil
		case FrameEvent:
			e, err := ParseEvent(f.Payload)
			if err == nil && d.opts.OnEvent != nil {
				d.opts.OnEvent(e)
			}
		default:
			// Unknown frame types from a newer bus are ignored.
		}
	}
}

// newSession makes s the session Writes go to.
func (d *Device) newSession() *Session {
	s := &Session{d: d, in: make(chan []byte, 16), closed: make(chan struct{})}
	d.wmu.Lock()
	d.cur = s
	d.wmu.Unlock()
	return s
}

// Accept returns the next host session: the first one at once, later ones
// when a host starts the mux over. It fails with ErrUnplugged once the
// phone is off the bus.
func (d *Device) Accept(ctx context.Context) (*Session, error) {
	select {
	case s := <-d.sessions:
		return s, nil
	default:
	}
	select {
	case s := <-d.sessions:
		return s, nil
	case <-d.done:
		return nil, d.err
	case <-ctx.Done():
		return nil, fmt.Errorf("usbemu: accept: %w", ctx.Err())
	}
}

// write sends p as one device→host transfer for session s.
func (d *Device) write(s *Session, p []byte) (int, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.cur != s {
		return 0, ErrSessionEnded
	}
	var err error
	d.wbuf, err = AppendFrame(d.wbuf[:0], Frame{Type: FrameIn, Payload: p})
	if err != nil {
		return 0, err
	}
	if _, err := d.conn.Write(d.wbuf); err != nil {
		select {
		case <-d.done:
			return 0, d.err
		default:
		}
		return 0, fmt.Errorf("%w: %w", ErrUnplugged, err)
	}
	return len(p), nil
}

// Close unplugs the phone and waits for the reader goroutine.
func (d *Device) Close() error {
	var err error
	d.closeOnce.Do(func() {
		close(d.quit)
		err = d.conn.Close()
	})
	<-d.done
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("usbemu: close: %w", err)
	}
	return nil
}

// Done is closed once the phone is off the bus.
func (d *Device) Done() <-chan struct{} { return d.done }

// Session is one host session of a plugged phone's mux: a Link whose Read
// returns one host→device transfer as the phone's USB stack ends it (at a
// short packet or ZLP) and whose Write sends one device→host transfer.
// Read returns io.EOF when a host started the mux over, and an error
// wrapping ErrUnplugged when the phone left the bus. Close ends only the
// session; the phone stays plugged in.
type Session struct {
	d      *Device
	in     chan []byte // transfers; closed by the reader goroutine at the end
	endErr error       // written before in is closed

	closeOnce sync.Once
	closed    chan struct{} // closed by Close

	rmu  sync.Mutex // guards rest (Read callers)
	rest []byte     // part of the current transfer not yet returned
}

// end is called by the reader goroutine when the session is over.
func (s *Session) end(err error) {
	s.endErr = err
	close(s.in)
}

// Read returns the next host→device transfer, or part of it when p is
// shorter (the rest comes with the next Read).
func (s *Session) Read(p []byte) (int, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	select {
	case <-s.closed:
		return 0, ErrSessionEnded
	default:
	}
	if len(s.rest) == 0 {
		select {
		case t, ok := <-s.in:
			if !ok {
				return 0, s.endErr
			}
			s.rest = t
		case <-s.closed:
			return 0, ErrSessionEnded
		}
	}
	n := copy(p, s.rest)
	s.rest = s.rest[n:]
	return n, nil
}

// Write sends p as one device→host transfer.
func (s *Session) Write(p []byte) (int, error) {
	select {
	case <-s.closed:
		return 0, ErrSessionEnded
	default:
	}
	return s.d.write(s, p)
}

// Close ends the session for this side: Read and Write fail from now on,
// and transfers the host still sends in it are dropped.
func (s *Session) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}
