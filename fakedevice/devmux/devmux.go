// Package devmux is the device side of the USB mux, played by the fake phone: it answers the
// host's VERSION handshake, listens on device ports and serves host connections as net.Conn.
// It is built from the same framer, codec and connection engine as the host (package usbmux),
// with the device's rules from corrections.md M-a: 16-byte headers from the VERSION reply on,
// SYN-ACK with flags exactly 0x12, never answering a pure ACK, acks that count consumed bytes.
package devmux

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/ibackup/ibackup/usbmux"
)

// Options configures the fake device's mux. The zero value behaves like a modern iPhone.
type Options struct {
	Logger *slog.Logger // nil: discard
	// VersionMajor is the major answered to the host's VERSION (default 2). 1 plays a v1-only
	// device (8-byte headers, no SETUP); anything else is a bad version the host must reject.
	VersionMajor uint32
	// NoVersionReply never answers VERSION (usbmuxd would wait forever, corrections.md M-a 1).
	NoVersionReply bool
	// Control messages are sent right after the VERSION reply (or instead of it with
	// NoVersionReply), in the framing then in force (usb-usbmux-lockdown.md §2.4).
	Control []usbmux.ControlMessage
	// Magic replaces 0xFEEDFACE in v2 headers, e.g. 0xFACEFACE: hosts must not check it (M-a 2).
	Magic uint32
	// Window is the advertised receive window in 256-byte units (default 512 = 128 KiB, [O]).
	Window uint16
	// RecvBuffer bounds unread bytes per connection (default twice the window).
	RecvBuffer int
	// MaxSegment bounds the payload of one device packet (default 32728, [O]).
	MaxSegment int
	// RefuseFlags are the flags of the reply to a SYN for a port nobody listens on
	// (default RST|ACK, which usbmuxd accepts without answering, M-a 5).
	RefuseFlags usbmux.TCPFlags
	// Backlog is the number of accepted-but-unclaimed connections per listener (default 16);
	// beyond it SYNs are refused.
	Backlog int
	// DelayedAck is the device's delayed-ACK timeout (default 30 ms).
	DelayedAck time.Duration
}

// Server is the device side of one link. Create it with New, add listeners with Listen, and run
// Serve; Serve owns the reader goroutine (through usbmux.Session).
type Server struct {
	link usbmux.Link
	opts Options
	log  *slog.Logger
	fr   *usbmux.Framer
	s    *usbmux.Session

	mu        sync.Mutex
	listeners map[uint16]*listener
	active    bool // VERSION answered
	served    bool // Serve was called
	done      chan struct{}
	cause     error
}

// ErrServerClosed is returned by Accept and Listen after the link ended.
var ErrServerClosed = fmt.Errorf("devmux: server closed: %w", net.ErrClosed)

// New returns a device-side mux on l. Nothing is read until Serve runs.
func New(l usbmux.Link, opts *Options) *Server {
	srv := &Server{link: l, listeners: make(map[uint16]*listener), done: make(chan struct{})}
	if opts != nil {
		srv.opts = *opts
	}
	o := &srv.opts
	if o.VersionMajor == 0 {
		o.VersionMajor = 2
	}
	if o.Window == 0 {
		o.Window = usbmux.DefaultWindow
	}
	if o.RecvBuffer <= 0 {
		o.RecvBuffer = 2 * int(usbmux.WindowBytes(o.Window))
	}
	if o.MaxSegment <= 0 {
		o.MaxSegment = usbmux.DeviceMaxSegment
	}
	if o.RefuseFlags == 0 {
		o.RefuseFlags = usbmux.FlagRST | usbmux.FlagACK
	}
	if o.Backlog <= 0 {
		o.Backlog = 16
	}
	srv.log = o.Logger
	if srv.log == nil {
		srv.log = slog.New(slog.DiscardHandler)
	}
	srv.fr = usbmux.NewFramer(l, l, usbmux.FramerConfig{Device: true, Magic: o.Magic})
	srv.s = usbmux.NewSession(srv.fr, l, usbmux.SessionConfig{Logger: srv.log,
		Unmatched: srv.unmatched, Other: srv.other})
	return srv
}

// Serve runs the device mux until the link dies or ctx ends (which closes the link), then
// closes every listener and connection and returns the cause. It may be called only once.
func (srv *Server) Serve(ctx context.Context) error {
	srv.mu.Lock()
	again := srv.served
	srv.served = true
	srv.mu.Unlock()
	if again {
		return errors.New("devmux: Serve called twice")
	}
	stop := context.AfterFunc(ctx, func() {
		srv.s.Close(fmt.Errorf("devmux: %w", context.Cause(ctx)))
	})
	defer stop()
	err := srv.s.Run()
	srv.mu.Lock()
	srv.cause = err
	ls := srv.listeners
	srv.listeners = map[uint16]*listener{}
	close(srv.done)
	srv.mu.Unlock()
	for _, l := range ls {
		l.shut()
	}
	return err
}

// Close ends the server and its link; Serve returns.
func (srv *Server) Close() error {
	srv.s.Close(ErrServerClosed)
	return nil
}

// Done is closed when Serve has returned.
func (srv *Server) Done() <-chan struct{} { return srv.done }

// ResetConn resets every live connection on device port port with reason in the RST payload
// (a fault knob: the device drops a service connection). It returns how many were reset.
func (srv *Server) ResetConn(port uint16, reason string) int {
	n := 0
	for _, c := range srv.s.Conns() {
		if c.LocalAddr().(usbmux.Addr).Port == port {
			_ = c.Reset(reason)
			n++
		}
	}
	return n
}

// other handles non-TCP packets: the host's VERSION and SETUP (§2.2); anything else is ignored.
func (srv *Server) other(p usbmux.Packet) {
	switch p.Header.Protocol {
	case usbmux.ProtoVersion:
		srv.mu.Lock()
		already := srv.active
		srv.active = true
		srv.mu.Unlock()
		if already {
			return
		}
		if _, err := usbmux.ParseVersion(p.Payload); err != nil {
			srv.log.Debug("devmux: bad VERSION from host", "err", err)
		}
		srv.answerVersion()
	case usbmux.ProtoSetup:
		srv.log.Debug("devmux: SETUP", "tx_seq", p.Header.TxSeq)
	default:
		srv.log.Debug("devmux: ignoring packet", "proto", p.Header.Protocol)
	}
}

// answerVersion writes the VERSION reply in v1 framing, then switches to v2 framing before any
// further packet is read or written (corrections.md M-a 3). It runs in the reader goroutine, so
// the SETUP that follows is parsed with the new header size; this is the only place the reader
// writes to the link, at a time when nothing else is queued.
func (srv *Server) answerVersion() {
	if !srv.opts.NoVersionReply {
		vp := usbmux.VersionPayload{Major: srv.opts.VersionMajor}
		if err := srv.fr.WritePacket(usbmux.ProtoVersion, vp.Append(nil)); err != nil {
			srv.s.Close(fmt.Errorf("devmux: VERSION reply: %w", err))
			return
		}
		if srv.opts.VersionMajor == 2 {
			srv.fr.SetVersion(2)
			srv.fr.ResetSeq()
		}
	}
	for _, m := range srv.opts.Control {
		if err := srv.fr.WritePacket(usbmux.ProtoControl, m.Append(nil)); err != nil {
			srv.s.Close(fmt.Errorf("devmux: CONTROL: %w", err))
			return
		}
	}
}

// unmatched handles SYNs (accept or refuse) and stray packets (reader goroutine).
func (srv *Server) unmatched(h usbmux.TCPHeader, _ []byte) {
	if h.Flags != usbmux.FlagSYN {
		srv.s.RefuseUnknown(h)
		return
	}
	reply := usbmux.TCPHeader{SrcPort: h.DstPort, DstPort: h.SrcPort, Ack: h.Seq.Add(1), Window: srv.opts.Window}
	srv.mu.Lock()
	l := srv.listeners[h.DstPort]
	srv.mu.Unlock()
	if l == nil {
		reply.Flags = srv.opts.RefuseFlags
		srv.s.QueueSegment(reply, nil)
		return
	}
	c, err := srv.s.Open(usbmux.ConnConfig{LocalPort: h.DstPort, RemotePort: h.SrcPort,
		SendNext: 1, RecvNext: h.Seq.Add(1), AckStart: h.Seq.Add(1), PeerAck: 1, PeerWindow: h.Window,
		Window: srv.opts.Window, RecvBuffer: srv.opts.RecvBuffer, MaxSegment: srv.opts.MaxSegment,
		DelayedAck: srv.opts.DelayedAck})
	if err != nil {
		reply.Flags = srv.opts.RefuseFlags
		srv.s.QueueSegment(reply, nil)
		return
	}
	reply.Flags = usbmux.FlagSYN | usbmux.FlagACK
	// The connection is handed to Accept only once its SYN-ACK is on the link: data the
	// device writes on it must never overtake the SYN-ACK (the host would refuse the dial).
	srv.s.QueueSegmentThen(reply, nil, func() {
		if !l.offer(c) {
			_ = c.Reset("backlog full")
		}
	})
}

// Listen accepts host connections to a device port. Only one listener per port.
func (srv *Server) Listen(port uint16) (net.Listener, error) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	select {
	case <-srv.done:
		return nil, ErrServerClosed
	default:
	}
	if srv.listeners[port] != nil {
		return nil, fmt.Errorf("devmux: port %d: %w", port, errAddrInUse)
	}
	l := &listener{srv: srv, port: port, ch: make(chan net.Conn, srv.opts.Backlog), closed: make(chan struct{})}
	srv.listeners[port] = l
	return l, nil
}

var errAddrInUse = errors.New("address already in use")
