package usbmux

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Link is one USB mux pipe: bulk transfers only. Implementations: usbmux/usb (libusb) and
// fakedevice/memlink. Write must not retain p after it returns.
type Link interface {
	Read(p []byte) (int, error)  // one bulk-IN transfer (may hold part of a mux packet, or a ZLP)
	Write(p []byte) (int, error) // one bulk-OUT transfer carrying exactly one mux packet
	Close() error
}

// ErrClosed is the cause reported after Mux.Close; it matches net.ErrClosed.
var ErrClosed = fmt.Errorf("usbmux: mux closed: %w", net.ErrClosed)

// Options tunes a Mux. A nil *Options means all defaults.
type Options struct {
	// Logger receives debug logs and device CONTROL messages; nil discards.
	Logger *slog.Logger
	// OnControl is called from the reader goroutine for each CONTROL message the device sends
	// (usb-usbmux-lockdown.md §2.4). It must not block.
	OnControl func(ControlMessage)
	// RecvBuffer is the per-connection receive buffer (default 262144, CONN_INBUF_SIZE).
	RecvBuffer int
	// DelayedAck is the delayed-ACK timeout (default 30 ms, ACK_TIMEOUT).
	DelayedAck time.Duration
	// IgnoreDeviceSeq turns off the check that device data is contiguous in sequence numbers
	// (duplicates dropped, gaps reset the connection) and takes every payload as usbmuxd does.
	// The check relies on the device counting bytes from its ISN, which real traffic shows
	// ([O] usbmuxd#175) but no source guarantees; this is the escape hatch.
	IgnoreDeviceSeq bool
}

// Mux is the host side of the USB mux over one Link (one device). Create it with NewMux; Dial
// opens connections to device ports.
//
// Goroutines: NewMux starts one (Session.Run, the reader, which owns dispatch and in turn runs
// the writer for ACKs and RSTs); Close waits for both. Dial, and Read/Write/Close of the
// connections, run in callers' goroutines. ports and nextPort are guarded by mu.
type Mux struct {
	link    Link
	fr      *Framer
	s       *Session
	opts    Options
	log     *slog.Logger
	version int

	mu       sync.Mutex
	ports    map[uint16]*pendingDial // host ports in use; pd == nil once established
	nextPort uint16

	runDone chan struct{}
}

type pendingDial struct {
	devPort uint16
	ch      chan dialResult // buffered 1; written once by the reader
}

type dialResult struct {
	c   *Conn
	err error
}

// NewMux runs the VERSION handshake on l (§2.2) and starts the mux's reader and writer
// goroutines. The mux owns l from now on: it is closed when the mux ends, and also when the
// handshake fails or ctx ends before it completes.
func NewMux(ctx context.Context, l Link, opts *Options) (*Mux, error) {
	m := &Mux{link: l, ports: make(map[uint16]*pendingDial), nextPort: 1, runDone: make(chan struct{})}
	if opts != nil {
		m.opts = *opts
	}
	m.log = m.opts.Logger
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.fr = NewFramer(l, l, FramerConfig{})
	// The handshake has no timeout of its own (usbmuxd waits forever, M-a 1); ctx bounds it by
	// closing the link, which ends the blocked read.
	stop := context.AfterFunc(ctx, func() { _ = l.Close() })
	v, err := m.handshake()
	if !stop() {
		err = fmt.Errorf("usbmux: handshake: %w", context.Cause(ctx))
	}
	if err != nil {
		_ = l.Close()
		return nil, err
	}
	m.version = v
	m.s = NewSession(m.fr, l, SessionConfig{Host: true, Logger: m.log,
		Unmatched: m.unmatched, Other: m.other, Removed: m.removed})
	go func() {
		_ = m.s.Run()
		close(m.runDone)
	}()
	return m, nil
}

// handshake sends VERSION 2.0 in v1 framing and waits for the device's VERSION; for a v2 device
// it switches to 16-byte headers and sends SETUP with the sequence fields reset (§2.2).
func (m *Mux) handshake() (int, error) {
	if err := m.fr.WritePacket(ProtoVersion, VersionPayload{Major: 2}.Append(nil)); err != nil {
		return 0, fmt.Errorf("usbmux: sending VERSION: %w", err)
	}
	for {
		p, err := m.fr.ReadPacket()
		if err != nil {
			return 0, fmt.Errorf("usbmux: waiting for VERSION: %w", err)
		}
		switch p.Header.Protocol {
		case ProtoVersion:
			vp, err := ParseVersion(p.Payload)
			if err != nil {
				return 0, err
			}
			switch vp.Major {
			case 1:
				return 1, nil
			case 2:
				m.fr.SetVersion(2) // header size switches with the reply (corrections.md M-a 3)
				m.fr.ResetSeq()
				if err := m.fr.WritePacket(ProtoSetup, []byte{SetupByte}); err != nil {
					return 0, fmt.Errorf("usbmux: sending SETUP: %w", err)
				}
				return 2, nil
			}
			return 0, &VersionError{Major: vp.Major, Minor: vp.Minor}
		case ProtoControl:
			msg, ok := m.control(p.Payload)
			if ok && msg.Type == ControlTypeError {
				// usbmuxd would only log it and wait forever; failing is clearer.
				return 0, &ControlError{Msg: msg}
			}
		default:
			// TCP before the device is active is discarded (§2.2 step 5), the rest ignored.
			m.log.Debug("usbmux: ignoring packet before VERSION", "proto", p.Header.Protocol)
		}
	}
}

// Version returns the negotiated mux version, 1 or 2.
func (m *Mux) Version() int { return m.version }

func (m *Mux) control(payload []byte) (ControlMessage, bool) {
	msg, err := ParseControl(payload)
	if err != nil {
		m.log.Debug("usbmux: bad CONTROL packet", "err", err)
		return msg, false
	}
	m.log.Info("usbmux: device control message", "type", msg.Type.String(), "text", msg.Text)
	if m.opts.OnControl != nil {
		m.opts.OnControl(msg)
	}
	return msg, true
}

// other handles non-TCP packets once active: CONTROL is surfaced, the rest ignored (M-a 12).
func (m *Mux) other(p Packet) {
	if p.Header.Protocol == ProtoControl {
		m.control(p.Payload)
		return
	}
	m.log.Debug("usbmux: ignoring packet", "proto", p.Header.Protocol)
}

// Dial opens a connection to a device port (host byte order, e.g. 62078 for lockdownd):
// SYN, SYN-ACK, ACK (§2.5). Anything but SYN|ACK in reply gives ErrRefused. If ctx ends first,
// the half-open connection is reset.
func (m *Mux) Dial(ctx context.Context, port uint16) (net.Conn, error) {
	pd := &pendingDial{devPort: port, ch: make(chan dialResult, 1)}
	m.mu.Lock()
	hostPort, err := m.allocLocked()
	if err == nil {
		m.ports[hostPort] = pd
	}
	m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	syn := TCPHeader{SrcPort: hostPort, DstPort: port, Flags: FlagSYN, Window: DefaultWindow}
	if err := m.s.WriteSegment(syn, nil); err != nil {
		m.release(hostPort, pd)
		return nil, fmt.Errorf("usbmux: dial device port %d: %w", port, err)
	}
	select {
	case r := <-pd.ch:
		if r.err != nil {
			return nil, r.err
		}
		return r.c, nil
	case <-ctx.Done():
		m.mu.Lock()
		still := m.ports[hostPort] == pd
		m.mu.Unlock()
		if still {
			m.release(hostPort, pd)
			m.s.QueueSegment(TCPHeader{SrcPort: hostPort, DstPort: port, Flags: FlagRST, Window: DefaultWindow}, nil)
		} else if r := <-pd.ch; r.c != nil {
			_ = r.c.Close()
		}
		return nil, fmt.Errorf("usbmux: dial device port %d: %w", port, context.Cause(ctx))
	case <-m.s.Done():
		return nil, fmt.Errorf("usbmux: dial device port %d: %w", port, m.s.Err())
	}
}

// allocLocked picks the next free host port: a counter from 1 that skips 0 and ports in use
// (§2.5 host source-port allocation).
func (m *Mux) allocLocked() (uint16, error) {
	for range 65536 {
		p := m.nextPort
		m.nextPort++
		if p == 0 {
			continue
		}
		if _, used := m.ports[p]; !used {
			return p, nil
		}
	}
	return 0, ErrPorts
}

func (m *Mux) release(hostPort uint16, pd *pendingDial) {
	m.mu.Lock()
	if m.ports[hostPort] == pd {
		delete(m.ports, hostPort)
	}
	m.mu.Unlock()
}

func (m *Mux) removed(c *Conn) { m.release(c.cfg.LocalPort, nil) }

// unmatched handles the reply to a pending SYN, or refuses a stray packet (reader goroutine).
func (m *Mux) unmatched(h TCPHeader, payload []byte) {
	m.mu.Lock()
	pd, ok := m.ports[h.DstPort]
	if !ok || pd == nil || pd.devPort != h.SrcPort {
		m.mu.Unlock()
		m.s.RefuseUnknown(h)
		return
	}
	if h.Flags != FlagSYN|FlagACK {
		delete(m.ports, h.DstPort)
		m.mu.Unlock()
		if h.Flags&FlagRST == 0 {
			m.s.QueueSegment(TCPHeader{SrcPort: h.DstPort, DstPort: h.SrcPort, Flags: FlagRST, Window: DefaultWindow}, nil)
		}
		pd.ch <- dialResult{err: fmt.Errorf("usbmux: dial device port %d: device answered %s: %w",
			h.SrcPort, h.Flags, ErrRefused)}
		return
	}
	m.ports[h.DstPort] = nil // established; the port stays in use until the conn is removed
	m.mu.Unlock()
	// SYN-ACK: our seq becomes 1 and our ack starts at 1 whatever the device's ISN (§2.5 Open,
	// M-a 11); the device's window and ack from this packet are already in force (M-a 5).
	c, err := m.s.Open(ConnConfig{LocalPort: h.DstPort, RemotePort: h.SrcPort,
		SendNext: 1, RecvNext: h.Seq.Add(1), AckStart: 1, PeerAck: h.Ack, PeerWindow: h.Window,
		RecvBuffer: m.opts.RecvBuffer, DelayedAck: m.opts.DelayedAck, IgnoreSeq: m.opts.IgnoreDeviceSeq})
	if err != nil {
		m.release(h.DstPort, nil)
		pd.ch <- dialResult{err: err}
		return
	}
	c.mu.Lock()
	c.queueAckLocked() // the third packet of the handshake: bare ACK seq=1 ack=1
	c.mu.Unlock()
	pd.ch <- dialResult{c: c}
}

// Close ends the mux: the link is closed, every connection fails with ErrClosed, and Close
// waits for the mux goroutines to exit.
func (m *Mux) Close() error {
	m.s.Close(ErrClosed)
	<-m.runDone
	return nil
}

// Wait blocks until the mux has ended and returns the cause (ErrClosed after Close; an error
// matching ErrLinkClosed when the link died).
func (m *Mux) Wait() error {
	<-m.runDone
	return m.s.Err()
}

// Done is closed when the mux has ended and its goroutines have exited.
func (m *Mux) Done() <-chan struct{} { return m.runDone }
