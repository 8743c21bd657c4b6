package notifyd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/ibackup/ibackup/lockdown/notifyproxy"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// MaxQueue bounds the relays waiting to be written to one host connection.
// A host that stops reading loses relays beyond it (the fake's choice; the
// real service's limit is unknown).
const MaxQueue = 1024

// Config describes one phone's notification_proxy service.
type Config struct {
	// Hub is the phone's notification center, shared by all its
	// notification_proxy connections. Nil gives the Server its own hub.
	Hub *Hub
}

// Server serves notification_proxy connections of one phone.
type Server struct {
	hub *Hub
}

// New returns a server on cfg.Hub.
func New(cfg Config) *Server {
	if cfg.Hub == nil {
		cfg.Hub = NewHub()
	}
	return &Server{hub: cfg.Hub}
}

// Hub returns the phone's hub.
func (s *Server) Hub() *Hub { return s.hub }

// Handler returns s.Serve, the shape lockdownd.Service.Serve expects.
func (s *Server) Handler() func(ctx context.Context, conn net.Conn) error { return s.Serve }

// hostConn is one host connection's state. observed and queue are guarded
// by mu; the Serve goroutine reads, its writer goroutine writes.
type hostConn struct {
	mu       sync.Mutex
	observed map[string]bool
	queue    []notifyproxy.Message
	final    bool          // ProxyDeath queued: nothing more is relayed
	wake     chan struct{} // capacity 1: "queue changed"
}

func (hc *hostConn) observes(name string) bool {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	return hc.observed[name]
}

func (hc *hostConn) addObservation(name string) {
	hc.mu.Lock()
	hc.observed[name] = true
	hc.mu.Unlock()
}

func (hc *hostConn) enqueueIfObserving(name string) bool {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.final || !hc.observed[name] || len(hc.queue) >= MaxQueue {
		return false
	}
	hc.queue = append(hc.queue, notifyproxy.Message{Command: notifyproxy.CommandRelay, Name: name})
	hc.signal()
	return true
}

// finish queues ProxyDeath (if proxyDeath) and stops further relays.
func (hc *hostConn) finish(proxyDeath bool) {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.final {
		return
	}
	hc.final = true
	if proxyDeath {
		hc.queue = append(hc.queue, notifyproxy.Message{Command: notifyproxy.CommandProxyDeath})
	}
	hc.signal()
}

func (hc *hostConn) signal() {
	select {
	case hc.wake <- struct{}{}:
	default:
	}
}

// writeLoop writes queued messages until the final one is written or ctx
// ends.
func (hc *hostConn) writeLoop(ctx context.Context, pc *plistconn.Conn) error {
	for {
		hc.mu.Lock()
		batch, final := hc.queue, hc.final
		hc.queue = nil
		hc.mu.Unlock()
		for _, m := range batch {
			b, err := m.Encode(plistconn.XML)
			if err != nil {
				return err
			}
			if err := pc.WriteRaw(b); err != nil {
				return fmt.Errorf("notifyd: %w", err)
			}
		}
		if final {
			return nil
		}
		select {
		case <-hc.wake:
		case <-ctx.Done():
			return nil
		}
	}
}

// Serve runs one host connection until the host sends Shutdown (answered
// with ProxyDeath, then the connection is closed), closes the connection,
// or ctx ends. It owns conn and closes it. Shutdown and a clean close
// return nil.
func (s *Server) Serve(parent context.Context, conn net.Conn) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	defer conn.Close()

	pc := plistconn.New(conn, plistconn.XML)
	pc.MaxSize = 1 << 20
	hc := &hostConn{observed: make(map[string]bool), wake: make(chan struct{}, 1)}
	s.hub.add(hc)
	defer s.hub.remove(hc)

	writerDone := make(chan error, 1)
	go func() { writerDone <- hc.writeLoop(ctx, pc) }()

	rerr := s.readLoop(pc, hc)
	if rerr == nil { // Shutdown: the writer flushes ProxyDeath and ends.
		return <-writerDone
	}
	hc.finish(false)
	cancel()
	<-writerDone
	switch {
	case parent.Err() != nil:
		return context.Cause(parent)
	case errors.Is(rerr, io.EOF):
		return nil
	}
	return rerr
}

// readLoop handles host messages; it returns nil after Shutdown.
func (s *Server) readLoop(pc *plistconn.Conn, hc *hostConn) error {
	for {
		b, err := pc.ReadRaw()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return io.EOF
			}
			return fmt.Errorf("notifyd: %w", err)
		}
		m, err := notifyproxy.DecodeMessage(b)
		if err != nil {
			return fmt.Errorf("notifyd: %w", err)
		}
		switch m.Command {
		case notifyproxy.CommandObserve:
			s.hub.observe(hc, m.Name)
		case notifyproxy.CommandPost:
			s.hub.hostPost(m.Name)
		case notifyproxy.CommandShutdown:
			hc.finish(true)
			return nil
		}
	}
}
