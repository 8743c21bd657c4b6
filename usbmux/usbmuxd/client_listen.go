package usbmuxd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Subscription is a dedicated Listen socket delivering device events
// (§3.4 Listen). Its reader goroutine owns the socket and stops when the
// daemon closes it, when the Listen context ends, or at Close.
type Subscription struct {
	conn    net.Conn
	fr      *Framer
	proto   ProtoVersion
	events  chan Event
	closing chan struct{}
	done    chan struct{}
	once    sync.Once
	err     error // set before done is closed
	stopCtx func() bool
}

// Listen subscribes to attach/detach (and, with the plist protocol, paired)
// events. The first events are Attached for every device present. Events()
// is closed when the subscription ends; Err then tells why.
func (c *Client) Listen(ctx context.Context) (*Subscription, error) {
	sub, err := c.listen(ctx, c.binary.Load())
	var re *ResultError
	if errors.As(err, &re) && re.Code == ResultBadVersion && !c.binary.Load() {
		c.binary.Store(true)
		return c.listen(ctx, true)
	}
	return sub, err
}

func (c *Client) listen(ctx context.Context, binary bool) (*Subscription, error) {
	s, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	tag := c.nextTag()
	proto := ProtoPlist
	if binary {
		proto = ProtoBinary
		if err = s.fr.WriteFrame(&Frame{Version: ProtoBinary, Type: TypeListen, Tag: tag}); err != nil {
			err = s.wrap(MsgListen, err)
		}
	} else {
		err = s.sendPlist(c.newRequest(MsgListen), tag)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	r, err := s.readReply(MsgListen)
	if err != nil {
		s.close()
		return nil, err
	}
	// The Result comes before any notification (usbmuxd queues it first);
	// anything else means the peer is not a usbmuxd.
	if r.MessageType != MsgResult || r.Number != 0 {
		s.close()
		if r.MessageType == MsgResult {
			return nil, &ResultError{Op: MsgListen, Code: ResultCode(r.Number)}
		}
		return nil, fmt.Errorf("usbmuxd: Listen: unexpected %q reply", r.MessageType)
	}
	// From here the socket lives until the subscription ends: clear the
	// request deadline; ctx still closes it.
	if err := s.conn.SetDeadline(time.Time{}); err != nil {
		s.close()
		return nil, fmt.Errorf("usbmuxd: %w", err)
	}
	sub := &Subscription{
		conn:    s.conn,
		fr:      s.fr,
		proto:   proto,
		events:  make(chan Event),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		stopCtx: s.stop,
	}
	go sub.run(ctx)
	return sub, nil
}

// Events returns the event channel; it is closed when the subscription ends.
func (s *Subscription) Events() <-chan Event { return s.events }

// Err returns why the subscription ended: nil after Close, the context's
// error after it ended, or the socket error. It blocks until then.
func (s *Subscription) Err() error {
	<-s.done
	return s.err
}

// Close ends the subscription and waits for its goroutine.
func (s *Subscription) Close() error {
	s.once.Do(func() { close(s.closing) })
	s.conn.Close()
	<-s.done
	return nil
}

// run is the subscription's reader goroutine. It owns the socket and the
// known-device map, and is the only sender on s.events; it closes events
// and done on exit, after recording the cause in s.err.
func (s *Subscription) run(ctx context.Context) {
	// Detached and Paired carry only the device ID; remember what Attached
	// said so callers get the UDID too.
	known := make(map[uint32]Device)
	var err error
	defer func() {
		s.stopCtx()
		s.conn.Close()
		// Close by the caller is a clean end; a cancelled context is
		// reported as such rather than as the read error it caused.
		select {
		case <-s.closing:
			err = nil
		default:
			if ctx.Err() != nil {
				err = fmt.Errorf("usbmuxd: listen: %w", ctx.Err())
			}
		}
		s.err = err
		close(s.events)
		close(s.done)
	}()
	for {
		var fr *Frame
		fr, err = s.fr.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("usbmuxd: daemon closed the listen socket: %w", err)
			}
			return
		}
		var ev Event
		var ok bool
		ev, ok, err = decodeEvent(fr)
		if err != nil {
			return
		}
		if !ok {
			continue
		}
		switch ev.Kind {
		case Attached:
			known[ev.Device.ID] = ev.Device
		case Detached:
			if d, ok := known[ev.Device.ID]; ok {
				ev.Device = d
				delete(known, d.ID)
			}
		case Paired:
			if d, ok := known[ev.Device.ID]; ok {
				ev.Device = d
			}
		}
		// Block until the caller takes the event: the daemon's socket
		// buffer and queue absorb bursts meanwhile.
		select {
		case s.events <- ev:
		case <-s.closing:
			return
		}
	}
}

// decodeEvent turns a notification into an Event; ok is false for messages
// that carry none (unknown plist notifications are skipped).
func decodeEvent(fr *Frame) (ev Event, ok bool, err error) {
	switch fr.Type {
	case TypePlist:
		r, err := ParseReply(fr.Payload)
		if err != nil {
			return Event{}, false, err
		}
		switch r.MessageType {
		case MsgAttached:
			if r.Properties == nil {
				return Event{}, false, fmt.Errorf("%w: Attached without Properties", ErrBadPlist)
			}
			return Event{Kind: Attached, Device: deviceFromProperties(r.DeviceID, r.Properties)}, true, nil
		case MsgDetached:
			return Event{Kind: Detached, Device: Device{ID: uint32(r.DeviceID)}}, true, nil
		case MsgPaired:
			return Event{Kind: Paired, Device: Device{ID: uint32(r.DeviceID)}}, true, nil
		}
		return Event{}, false, nil
	case TypeDeviceAdd:
		// Binary records carry no connection type; they are USB (our
		// server only serves USB devices, and libusbmuxd leaves it unset,
		// corrections.md M-b1).
		rec, err := ParseDeviceRecord(fr.Payload)
		if err != nil {
			return Event{}, false, err
		}
		return Event{Kind: Attached, Device: Device{ID: rec.DeviceID, UDID: rec.SerialNumber,
			ProductID: rec.ProductID, LocationID: rec.Location, ConnectionType: ConnectionTypeUSB}}, true, nil
	case TypeDeviceRemove, TypeDevicePaired:
		id, err := ParseDeviceID(fr.Payload)
		if err != nil {
			return Event{}, false, err
		}
		kind := Detached
		if fr.Type == TypeDevicePaired {
			kind = Paired
		}
		return Event{Kind: kind, Device: Device{ID: id}}, true, nil
	}
	return Event{}, false, nil
}
