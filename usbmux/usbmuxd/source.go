package usbmuxd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
)

// ConnectionTypeUSB is the only connection type this package serves;
// libusbmuxd rejects the whole device list when an entry has any type other
// than "USB" or "Network" (corrections.md A4).
const ConnectionTypeUSB = "USB"

// DefaultSpeed is the ConnectionSpeed usbmuxd reports for high-speed (and
// unknown) USB links, in bit/s (§1.5).
const DefaultSpeed = 480_000_000

// Device is one phone as the usbmuxd protocol describes it (§3.4
// Attached.Properties).
type Device struct {
	// ID is the daemon's handle for the device, > 0 (libusbmuxd ends its
	// device list at handle 0). A replugged device gets a new ID (§3.5).
	ID uint32
	// UDID is the SerialNumber, hyphenated as in §1.2.
	UDID       string
	ProductID  uint16
	LocationID uint32
	// Speed is ConnectionSpeed in bit/s; DefaultSpeed when 0.
	Speed uint64
	// ConnectionType is "USB" when empty.
	ConnectionType string
}

func (d Device) properties() DeviceProperties {
	p := DeviceProperties{
		ConnectionSpeed: d.Speed,
		ConnectionType:  d.ConnectionType,
		DeviceID:        uint64(d.ID),
		LocationID:      uint64(d.LocationID),
		ProductID:       uint64(d.ProductID),
		SerialNumber:    d.UDID,
	}
	if p.ConnectionSpeed == 0 {
		p.ConnectionSpeed = DefaultSpeed
	}
	if p.ConnectionType == "" {
		p.ConnectionType = ConnectionTypeUSB
	}
	return p
}

func (d Device) attached() AttachedMessage {
	return AttachedMessage{MessageType: MsgAttached, DeviceID: uint64(d.ID), Properties: d.properties()}
}

func deviceFromProperties(id uint64, p *DeviceProperties) Device {
	d := Device{ID: uint32(id)}
	if p != nil {
		if p.DeviceID != 0 {
			d.ID = uint32(p.DeviceID)
		}
		d.UDID = p.SerialNumber
		d.ProductID = uint16(p.ProductID)
		d.LocationID = uint32(p.LocationID)
		d.Speed = p.ConnectionSpeed
		d.ConnectionType = p.ConnectionType
	}
	return d
}

// EventKind says what happened to a device.
type EventKind int

const (
	// Attached: the device became visible.
	Attached EventKind = iota + 1
	// Detached: the device went away; its ID is not reused while attached.
	Detached
	// Paired: a pair record was saved for the device (plist protocol only
	// reports it to listeners; sources never produce it).
	Paired
)

// String returns the plist MessageType for the kind.
func (k EventKind) String() string {
	switch k {
	case Attached:
		return MsgAttached
	case Detached:
		return MsgDetached
	case Paired:
		return MsgPaired
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is a change in the set of devices. For Detached and Paired events
// received by a Client, Device carries what the client knew about the ID
// (at least the ID).
type Event struct {
	Kind   EventKind
	Device Device
}

// ErrNoDevice reports a device ID that is not attached. The server answers
// Connect with BADDEV for it and CONNREFUSED for any other dial error.
var ErrNoDevice = errors.New("usbmuxd: no such device")

// Source is where a Server gets its devices: our USB mux, fake phones, or
// anything else that can open a stream to a device port.
type Source interface {
	// Watch returns the devices attached now and a channel of later
	// Attached/Detached events, consistent with that snapshot, until ctx
	// ends; then the channel is closed. Device IDs are > 0 and unique among
	// attached devices.
	Watch(ctx context.Context) ([]Device, <-chan Event)
	// Dial opens a stream to port (host byte order, e.g. 62078) of the
	// attached device with the given ID. It returns an error wrapping
	// ErrNoDevice when the ID is unknown.
	Dial(ctx context.Context, deviceID uint32, port uint16) (net.Conn, error)
}

// DialFunc opens a stream to a port of one device; usbmux.(*Mux).Dial has
// this shape.
type DialFunc func(ctx context.Context, port uint16) (net.Conn, error)

// DeviceSet is a ready-made Source: callers Add and Remove devices, each
// with the function that dials it, and the set assigns IDs and tells
// watchers. It is safe for concurrent use.
type DeviceSet struct {
	mu       sync.Mutex
	devs     map[uint32]*setEntry // by ID
	byUDID   map[string]uint32
	nextID   uint32
	watchers map[*setWatcher]struct{}
}

type setEntry struct {
	dev  Device
	dial DialFunc
}

// NewDeviceSet returns an empty set.
func NewDeviceSet() *DeviceSet {
	return &DeviceSet{
		devs:     make(map[uint32]*setEntry),
		byUDID:   make(map[string]uint32),
		nextID:   1,
		watchers: make(map[*setWatcher]struct{}),
	}
}

// ErrDuplicate reports an Add for a UDID that is already attached.
var ErrDuplicate = errors.New("usbmuxd: device already attached")

// Add attaches a device. d.ID is ignored: the set numbers devices from 1
// upward, skipping IDs in use, like usbmuxd (§3.5). It returns the device
// with its ID.
func (s *DeviceSet) Add(d Device, dial DialFunc) (Device, error) {
	if d.UDID == "" || dial == nil {
		return Device{}, errors.New("usbmuxd: Add needs a UDID and a dial function")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byUDID[d.UDID]; ok {
		return Device{}, fmt.Errorf("%w: %s", ErrDuplicate, d.UDID)
	}
	if len(s.devs) >= 1<<31 {
		return Device{}, errors.New("usbmuxd: too many devices")
	}
	for s.nextID == 0 || s.devs[s.nextID] != nil {
		s.nextID++
	}
	d.ID = s.nextID
	s.nextID++
	s.devs[d.ID] = &setEntry{dev: d, dial: dial}
	s.byUDID[d.UDID] = d.ID
	s.broadcast(Event{Kind: Attached, Device: d})
	return d, nil
}

// Remove detaches the device with the given UDID and reports whether it was
// attached. Streams already dialled are the caller's to close.
func (s *DeviceSet) Remove(udid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.byUDID[udid]
	if !ok {
		return false
	}
	e := s.devs[id]
	delete(s.devs, id)
	delete(s.byUDID, udid)
	s.broadcast(Event{Kind: Detached, Device: e.dev})
	return true
}

// Devices returns the attached devices ordered by ID.
func (s *DeviceSet) Devices() []Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshot()
}

func (s *DeviceSet) snapshot() []Device {
	out := make([]Device, 0, len(s.devs))
	for _, e := range s.devs {
		out = append(out, e.dev)
	}
	slices.SortFunc(out, func(a, b Device) int { return int(int64(a.ID) - int64(b.ID)) })
	return out
}

// Dial implements Source.
func (s *DeviceSet) Dial(ctx context.Context, deviceID uint32, port uint16) (net.Conn, error) {
	s.mu.Lock()
	e := s.devs[deviceID]
	s.mu.Unlock()
	if e == nil {
		return nil, fmt.Errorf("%w: id %d", ErrNoDevice, deviceID)
	}
	return e.dial(ctx, port)
}

// Watch implements Source. Events are queued per watcher without bound, so
// Add and Remove never block on a slow reader; one goroutine per watcher
// forwards them and exits (closing the channel) when ctx ends.
func (s *DeviceSet) Watch(ctx context.Context) ([]Device, <-chan Event) {
	w := &setWatcher{signal: make(chan struct{}, 1)}
	out := make(chan Event)
	s.mu.Lock()
	snap := s.snapshot()
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			s.mu.Lock()
			delete(s.watchers, w)
			s.mu.Unlock()
		}()
		for {
			ev, ok := w.next()
			if !ok {
				select {
				case <-w.signal:
					continue
				case <-ctx.Done():
					return
				}
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return snap, out
}

// broadcast queues ev for every watcher; s.mu is held.
func (s *DeviceSet) broadcast(ev Event) {
	for w := range s.watchers {
		w.push(ev)
	}
}

type setWatcher struct {
	mu     sync.Mutex
	queue  []Event
	signal chan struct{} // capacity 1: "queue may be non-empty"
}

func (w *setWatcher) push(ev Event) {
	w.mu.Lock()
	w.queue = append(w.queue, ev)
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (w *setWatcher) next() (Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		return Event{}, false
	}
	ev := w.queue[0]
	w.queue[0] = Event{}
	w.queue = w.queue[1:]
	return ev, true
}

// Dial calls f, so a DialFunc is itself a per-device dialer.
func (f DialFunc) Dial(ctx context.Context, port uint16) (net.Conn, error) { return f(ctx, port) }
