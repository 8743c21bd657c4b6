package usbmux

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
)

// SessionConfig configures a Session. Host selects the host's ACK rules; the device side
// (fakedevice/devmux) leaves it false.
type SessionConfig struct {
	Host   bool
	Logger *slog.Logger // nil: discard
	// Unmatched is called by the reader goroutine for a TCP packet that belongs to no open
	// connection (SYN, SYN-ACK, stray packets). Nil answers with RefuseUnknown.
	Unmatched func(h TCPHeader, payload []byte)
	// Other is called by the reader goroutine for every non-TCP packet; its payload is only
	// valid during the call.
	Other func(p Packet)
	// Removed is called (from any goroutine, no locks held) when a connection leaves the table.
	Removed func(c *Conn)
}

type connKey struct{ local, remote uint16 }

// queued is a packet waiting for the writer goroutine: a bare ACK for ack, or seg+payload.
type queued struct {
	ack     *Conn
	seg     TCPHeader
	payload []byte
	after   func() // run by the writer once the packet is on the link
}

// maxQueued bounds queued RSTs and similar packets; beyond it they are dropped (the peer ignores
// nothing it needs: a lost anonymous RST only delays its own cleanup).
const maxQueued = 4096

// Session is the connection engine shared by the host Mux and the fake device: the reader loop
// that dispatches packets, the writer goroutine that sends ACKs and RSTs without ever blocking
// the reader, and the table of connections (STYLE.md 11).
//
// Goroutines: Run is the reader and owns dispatch; it starts the writer and waits for it. The
// table, queue and cause are guarded by mu. Lock order: Conn.mu before Session.mu; the session
// never calls into a Conn while holding mu.
type Session struct {
	fr     *Framer
	closer io.Closer
	cfg    SessionConfig
	log    *slog.Logger

	mu    sync.Mutex
	conns map[connKey]*Conn
	q     []queued
	dead  bool
	cause error

	wake chan struct{}
	done chan struct{}
}

// NewSession returns a session over fr. closer (normally the Link) is closed when the session
// fails, which unblocks the reader.
func NewSession(fr *Framer, closer io.Closer, cfg SessionConfig) *Session {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Session{fr: fr, closer: closer, cfg: cfg, log: log,
		conns: make(map[connKey]*Conn), wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Framer returns the session's framer.
func (s *Session) Framer() *Framer { return s.fr }

// Done is closed once the session has failed or been closed.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns the cause the session ended with, or nil while it runs.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cause
}

// Close ends the session with cause: closes the link and fails every connection with it. Only
// the first cause is kept.
func (s *Session) Close(cause error) {
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return
	}
	s.dead = true
	s.cause = cause
	conns := make([]*Conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.conns = map[connKey]*Conn{}
	s.q = nil
	close(s.done)
	s.mu.Unlock()
	_ = s.closer.Close()
	for _, c := range conns {
		c.fail(cause)
		if s.cfg.Removed != nil {
			s.cfg.Removed(c)
		}
	}
}

// Run reads and dispatches packets until the link fails or Close is called, then waits for
// the writer goroutine and returns the cause.
func (s *Session) Run() error {
	var wg sync.WaitGroup
	wg.Go(s.writer)
	for {
		p, err := s.fr.ReadPacket()
		if err != nil {
			s.Close(fmt.Errorf("%w: %w", ErrLinkClosed, err))
			break
		}
		s.dispatch(p)
	}
	wg.Wait()
	return s.Err()
}

func (s *Session) dispatch(p Packet) {
	if p.Header.Protocol != ProtoTCP {
		if s.cfg.Other != nil {
			s.cfg.Other(p)
		}
		return
	}
	h, payload, err := ParseTCP(p.Payload)
	if err != nil {
		s.log.Debug("usbmux: dropping short TCP packet", "err", err) // corrections.md M-a 12
		return
	}
	// Connections are keyed by (our port, peer port); the packet's destination is our port.
	s.mu.Lock()
	c := s.conns[connKey{h.DstPort, h.SrcPort}]
	s.mu.Unlock()
	switch {
	case c != nil:
		c.handleSegment(h, payload)
	case s.cfg.Unmatched != nil:
		s.cfg.Unmatched(h, payload)
	default:
		s.RefuseUnknown(h)
	}
}

// RefuseUnknown answers a packet for an unknown connection the way usbmuxd does: nothing for a
// RST, otherwise an anonymous RST with seq 0, ack = the packet's seq, window 0 (§2.5).
func (s *Session) RefuseUnknown(h TCPHeader) {
	if h.Flags&FlagRST != 0 {
		return
	}
	s.queue(queued{seg: TCPHeader{SrcPort: h.DstPort, DstPort: h.SrcPort, Ack: h.Seq, Flags: FlagRST}})
}

// Open registers an established connection and returns it.
func (s *Session) Open(cfg ConnConfig) (*Conn, error) {
	c := newConn(s, cfg)
	k := connKey{cfg.LocalPort, cfg.RemotePort}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return nil, s.cause
	}
	if s.conns[k] != nil {
		return nil, fmt.Errorf("usbmux: connection %d↔%d already open", k.local, k.remote)
	}
	s.conns[k] = c
	return c, nil
}

// Conns returns a snapshot of the open connections.
func (s *Session) Conns() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Conn, 0, len(s.conns))
	for _, c := range s.conns {
		out = append(out, c)
	}
	return out
}

func (s *Session) remove(c *Conn) {
	k := connKey{c.cfg.LocalPort, c.cfg.RemotePort}
	s.mu.Lock()
	found := s.conns[k] == c
	if found {
		delete(s.conns, k)
	}
	s.mu.Unlock()
	if found && s.cfg.Removed != nil {
		s.cfg.Removed(c)
	}
}

// QueueSegment hands a packet to the writer goroutine (for the reader, which must never block
// on the link). The payload is copied.
func (s *Session) QueueSegment(h TCPHeader, payload []byte) {
	s.queue(queued{seg: h, payload: append([]byte(nil), payload...)})
}

func (s *Session) queue(q queued) {
	s.mu.Lock()
	if s.dead || (q.ack == nil && len(s.q) >= maxQueued) {
		s.mu.Unlock()
		return
	}
	s.q = append(s.q, q)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// QueueSegmentThen is QueueSegment with a callback the writer goroutine runs once the
// packet has been written to the link (not run if the session dies first). The device side
// uses it to hand out a connection only after its SYN-ACK is on the wire, so data written on
// the new connection can never overtake the SYN-ACK.
func (s *Session) QueueSegmentThen(h TCPHeader, payload []byte, after func()) {
	s.queue(queued{seg: h, payload: append([]byte(nil), payload...), after: after})
}

// WriteSegment writes one TCP packet now, from the caller's goroutine. A write error is
// link-fatal: it closes the session.
func (s *Session) WriteSegment(h TCPHeader, payload []byte) error {
	return s.writeSegment(h, payload)
}

func (s *Session) writeSegment(h TCPHeader, payload []byte) error {
	if err := s.fr.WriteTCP(h, payload); err != nil {
		s.Close(fmt.Errorf("%w: %w", ErrLinkClosed, err))
		return s.Err()
	}
	return nil
}

// writer sends queued ACKs and RSTs in order until the session ends.
func (s *Session) writer() {
	var batch []queued
	for {
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
		// Drain everything queued, including what arrives while we write; the wake channel
		// holds at most one token, so the inner loop is what guarantees nothing is missed.
		for {
			s.mu.Lock()
			batch, s.q = s.q, batch[:0]
			s.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			for i, q := range batch {
				h, payload := q.seg, q.payload
				if q.ack != nil {
					var ok bool
					if h, ok = q.ack.ackHeader(); !ok {
						continue
					}
				}
				after := q.after
				batch[i] = queued{}
				if s.writeSegment(h, payload) != nil {
					return
				}
				if after != nil {
					after()
				}
			}
		}
	}
}
