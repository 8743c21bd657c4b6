package usbmuxd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/ibackup/ibackup/lockdown/pairrecord"
)

// Options configures a Server. The zero value is usable.
type Options struct {
	// Records is the pair-record directory served by ReadBUID and the
	// pair-record commands; Path "" means pairrecord.DefaultDir
	// (/var/lib/lockdown, as usbmuxd uses it, §4.1).
	Records pairrecord.Dir
	// Logger receives debug and warning messages; nil discards them.
	Logger *slog.Logger
	// DialTimeout bounds a Connect's dial to the device (10 s when 0;
	// libusbmuxd gives up after 5 s, §1.2 of the client-needs doc).
	DialTimeout time.Duration
	// WriteTimeout bounds each reply and notification write; a client that
	// does not read for that long is dropped (10 s when 0).
	WriteTimeout time.Duration
	// MaxQueuedEvents bounds the notifications waiting for one listening
	// client; a client that falls further behind is dropped (1024 when 0).
	MaxQueuedEvents int
}

// ErrServerClosed is returned by Serve and ServeConn after Close.
var ErrServerClosed = errors.New("usbmuxd: server closed")

// Server serves the usbmuxd socket protocol for the devices of a Source.
//
// Goroutines: one watches the Source and updates the device table (owned by
// the Server, stopped by Close); each ServeConn runs in its caller's
// goroutine and owns its client; a listening client has one extra reader
// goroutine, a connected client two copy goroutines, all waited for before
// ServeConn returns.
type Server struct {
	src     Source
	records pairrecord.Dir
	log     *slog.Logger
	opts    Options

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // watch goroutine and every ServeConn

	buidMu sync.Mutex // SystemConfiguration.plist is created on first read

	mu         sync.Mutex // guards the fields below
	closed     bool
	devices    map[uint32]Device
	clients    map[*client]struct{}
	netLns     map[net.Listener]struct{}
	nextClient uint64
}

// NewServer returns a Server for src and starts watching it. Call Close to
// stop it.
func NewServer(src Source, opts *Options) *Server {
	s := &Server{
		src:     src,
		devices: make(map[uint32]Device),
		clients: make(map[*client]struct{}),
		netLns:  make(map[net.Listener]struct{}),
	}
	if opts != nil {
		s.opts = *opts
	}
	if s.opts.DialTimeout <= 0 {
		s.opts.DialTimeout = 10 * time.Second
	}
	if s.opts.WriteTimeout <= 0 {
		s.opts.WriteTimeout = 10 * time.Second
	}
	if s.opts.MaxQueuedEvents <= 0 {
		s.opts.MaxQueuedEvents = 1024
	}
	s.records = s.opts.Records
	if s.records.Path == "" {
		s.records.Path = pairrecord.DefaultDir
	}
	s.log = s.opts.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	// Take the snapshot synchronously so that ListDevices right after
	// NewServer already sees the devices; later changes arrive through the
	// watch goroutine.
	s.ctx, s.cancel = context.WithCancel(context.Background())
	snap, events := src.Watch(s.ctx)
	for _, d := range snap {
		s.apply(Event{Kind: Attached, Device: d})
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for ev := range events {
			s.apply(ev)
		}
	}()
	return s
}

// Devices returns the visible devices ordered by ID.
func (s *Server) Devices() []Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sortedDevices()
}

func (s *Server) sortedDevices() []Device {
	out := make([]Device, 0, len(s.devices))
	for _, d := range s.devices {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Device) int { return int(int64(a.ID) - int64(b.ID)) })
	return out
}

// apply updates the device table from a Source event and tells listeners.
func (s *Server) apply(ev Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := ev.Device
	switch ev.Kind {
	case Attached:
		// ID 0 ends libusbmuxd's device list, and an entry without
		// SerialNumber makes it fail the whole list (A4): never publish
		// either.
		if d.ID == 0 || d.UDID == "" {
			s.log.Warn("usbmuxd: source reported a device without ID or UDID; ignored", "id", d.ID, "udid", d.UDID)
			return
		}
		if _, dup := s.devices[d.ID]; dup {
			s.log.Warn("usbmuxd: source reused an attached device ID; ignored", "id", d.ID, "udid", d.UDID)
			return
		}
		s.devices[d.ID] = d
	case Detached:
		if _, ok := s.devices[d.ID]; !ok {
			return
		}
		delete(s.devices, d.ID)
	default:
		return
	}
	s.notifyLocked(ev)
}

// notifyLocked queues ev for every listening client; s.mu is held.
func (s *Server) notifyLocked(ev Event) {
	for c := range s.clients {
		if c.listening {
			c.pushLocked(ev, s.opts.MaxQueuedEvents)
		}
	}
}

// Serve accepts connections on l and serves each in its own goroutine
// until ctx ends, Close is called or Accept fails. It closes l and waits for
// the connections it started before returning.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.netLns[l] = struct{}{}
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		l.Close()
		wg.Wait()
		s.mu.Lock()
		delete(s.netLns, l)
		s.mu.Unlock()
	}()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	backoff := 5 * time.Millisecond
	for {
		conn, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("usbmuxd: accept: %w", err)
			}
			// Transient errors such as EMFILE: back off and retry.
			s.log.Warn("usbmuxd: accept failed; retrying", "err", err, "delay", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.ServeConn(ctx, conn); err != nil {
				s.log.Debug("usbmuxd: client ended", "err", err)
			}
		}()
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops watching the Source, closes every listener given to Serve and
// every client connection, and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for c := range s.clients {
		c.conn.Close()
	}
	for l := range s.netLns {
		l.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// ServeConn serves one accepted client connection until the client closes
// it, it misbehaves, ctx ends or the Server is closed, and closes it. After a
// successful Connect it copies bytes between the client and the device
// until either side closes. The error says why the client was dropped; a
// clean close by the client is nil.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) error {
	c, err := s.register(conn)
	if err != nil {
		conn.Close()
		return err
	}
	defer s.wg.Done()
	defer s.unregister(c)
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopSrv := context.AfterFunc(s.ctx, cancel)
	defer stopSrv()
	// Closing the conn is how ctx and Close interrupt blocking reads.
	stopConn := context.AfterFunc(ctx, func() { conn.Close() })
	defer stopConn()

	// Command state: one request, one reply, until the client switches the
	// socket to listening or to a raw stream (usbmuxd client.c states
	// COMMAND → LISTEN / CONNECTING → CONNECTED). Messages longer than
	// 64 KiB or shorter than the header end the client (§3.2).
	for {
		fr, err := c.fr.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		next, err := s.handle(ctx, c, fr)
		if err != nil {
			return err
		}
		switch next.mode {
		case modeListen:
			return s.serveListen(ctx, c)
		case modeConnected:
			return s.splice(c, next.dev)
		}
	}
}

func (s *Server) register(conn net.Conn) (*client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrServerClosed
	}
	s.nextClient++
	c := &client{id: s.nextClient, conn: conn, fr: NewFramer(conn, conn)}
	s.clients[c] = struct{}{}
	s.wg.Add(1)
	return c, nil
}

func (s *Server) unregister(c *client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.clients, c)
}

// client is one accepted connection. conn, fr and proto belong to the
// ServeConn goroutine; the identification and listen fields are guarded by
// Server.mu because ListListeners and device events touch them.
type client struct {
	id    uint64
	conn  net.Conn
	fr    *Framer
	proto ProtoVersion // version of replies: 1 after the first plist message

	progName, bundleID, versionString string
	libVersion                        uint64

	listening bool
	queue     []Event
	overflow  bool
	signal    chan struct{} // capacity 1: queue changed
}

// pushLocked queues a notification; Server.mu is held.
func (c *client) pushLocked(ev Event, max int) {
	if len(c.queue) >= max {
		c.overflow = true
	} else {
		c.queue = append(c.queue, ev)
	}
	select {
	case c.signal <- struct{}{}:
	default:
	}
}
