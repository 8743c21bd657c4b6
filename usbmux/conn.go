package usbmux

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Defaults of the TCP emulation (usb-usbmux-lockdown.md §2.5–2.6, corrections.md M-a 8–9).
const (
	DefaultWindow     = 512                   // advertised window, 256-byte units (131072 bytes)
	DefaultRecvBuffer = 262144                // CONN_INBUF_SIZE
	DefaultDelayedAck = 30 * time.Millisecond // ACK_TIMEOUT
	// DeviceMaxSegment is the largest device→host payload seen from real devices (§2.5 [O]).
	DeviceMaxSegment = 32728
)

// Addr is the address of one end of a mux connection: a port on the host or on the device.
type Addr struct {
	Device bool // port on the device side
	Port   uint16
}

// Network returns "usbmux".
func (a Addr) Network() string { return "usbmux" }

// String returns "host:N" or "device:N".
func (a Addr) String() string {
	if a.Device {
		return "device:" + strconv.Itoa(int(a.Port))
	}
	return "host:" + strconv.Itoa(int(a.Port))
}

// ConnConfig describes an established connection (the SYN exchange is done by the caller) for
// Session.Open. Zero numeric fields take the defaults above.
type ConnConfig struct {
	LocalPort, RemotePort uint16
	// SendNext is our next sequence number (1 after a SYN or SYN-ACK with sequence 0).
	SendNext Seq
	// RecvNext is the peer's next sequence number (its ISN + 1). Data is checked against it:
	// duplicates are dropped, a gap resets the connection.
	RecvNext Seq
	// AckStart is the ack number sent before anything was consumed. usbmuxd uses 1 whatever
	// the device's ISN (corrections.md M-a 11).
	AckStart Seq
	// PeerAck and PeerWindow come from the peer's SYN or SYN-ACK (M-a 5).
	PeerAck    Seq
	PeerWindow uint16
	// Window is what we advertise, in 256-byte units; it never changes: flow control works by
	// withholding ACKs until the reader consumes data (§2.5).
	Window uint16
	// RecvBuffer bounds unread received bytes; a peer overflowing it gets a RST (M-a 9).
	RecvBuffer int
	// MaxSegment bounds the payload of one packet we send.
	MaxSegment int
	// DelayedAck is how long a consumed-but-unacknowledged byte may wait for an ACK.
	DelayedAck time.Duration
	// IgnoreSeq accepts data whatever its sequence number, as usbmuxd does.
	IgnoreSeq bool
}

func (cfg *ConnConfig) fill(host bool) {
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.RecvBuffer <= 0 {
		cfg.RecvBuffer = DefaultRecvBuffer
	}
	if cfg.MaxSegment <= 0 {
		cfg.MaxSegment = MaxHostPayload
		if !host {
			cfg.MaxSegment = DeviceMaxSegment
		}
	}
	if cfg.DelayedAck <= 0 {
		cfg.DelayedAck = DefaultDelayedAck
	}
}

// Conn is one mux connection: the per-connection TCP emulation, as a net.Conn with deadlines.
// The Session's reader goroutine feeds it packets (handleSegment); Read, Write and Close run in
// callers' goroutines; ACKs and RSTs it asks for are written by the Session's writer goroutine.
type Conn struct {
	s    *Session
	cfg  ConnConfig
	host bool

	wmu sync.Mutex // serialises Write so segments of one call stay contiguous

	mu         sync.Mutex // guards everything below
	rbuf       ring       // received, unread data
	rcvNxt     Seq        // next peer sequence number expected
	ackNext    Seq        // ack to send: AckStart + bytes consumed by Read
	ackSent    Seq        // last ack number written
	ackQueued  bool
	ackArmed   bool // delayed-ACK timer running
	ackTimer   *time.Timer
	sndNxt     Seq
	peerAck    Seq
	peerWin    uint32
	rerr, werr error         // terminal errors; rerr is returned once rbuf is drained
	closed     bool          // Close or Reset was called
	change     chan struct{} // closed and cleared on every state change (broadcast)
	rdl, wdl   *deadline     // set once at creation; internally locked
}

func newConn(s *Session, cfg ConnConfig) *Conn {
	cfg.fill(s.cfg.Host)
	return &Conn{
		s: s, cfg: cfg, host: s.cfg.Host,
		rcvNxt: cfg.RecvNext, ackNext: cfg.AckStart, ackSent: cfg.AckStart,
		sndNxt: cfg.SendNext, peerAck: cfg.PeerAck, peerWin: WindowBytes(cfg.PeerWindow),
		rdl: newDeadline(), wdl: newDeadline(),
	}
}

// LocalAddr returns our end's port.
func (c *Conn) LocalAddr() net.Addr { return Addr{Device: !c.host, Port: c.cfg.LocalPort} }

// RemoteAddr returns the peer's port.
func (c *Conn) RemoteAddr() net.Addr { return Addr{Device: c.host, Port: c.cfg.RemotePort} }

// SetDeadline sets both the read and the write deadline.
func (c *Conn) SetDeadline(t time.Time) error {
	c.rdl.set(t)
	c.wdl.set(t)
	c.wake()
	return nil
}

// SetReadDeadline sets the read deadline; blocked and future Reads fail with a net.Error whose
// Timeout() is true once it passes.
func (c *Conn) SetReadDeadline(t time.Time) error { c.rdl.set(t); c.wake(); return nil }

// SetWriteDeadline sets the write deadline; it bounds the wait for send window, not a link
// transfer already in progress.
func (c *Conn) SetWriteDeadline(t time.Time) error { c.wdl.set(t); c.wake(); return nil }

func (c *Conn) wake() {
	c.mu.Lock()
	c.broadcastLocked()
	c.mu.Unlock()
}

func (c *Conn) broadcastLocked() {
	if c.change != nil {
		close(c.change)
		c.change = nil
	}
}

func (c *Conn) waitChLocked() chan struct{} {
	if c.change == nil {
		c.change = make(chan struct{})
	}
	return c.change
}

func expired(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Read reads received data. Consuming data is what advances our ack number, so a slow reader
// stalls the peer (back-pressure, §2.5). After the peer's RST, buffered data is still returned
// first; then Read returns io.EOF (plain RST) or a *ResetError (RST with a reason).
func (c *Conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if c.closed {
			return 0, c.rerr
		}
		dl := c.rdl.wait()
		if expired(dl) {
			return 0, timeoutError{}
		}
		if c.rbuf.Len() > 0 {
			n := c.rbuf.Read(p)
			if c.rbuf.Len() > 0 {
				c.broadcastLocked() // let another reader take the rest
			}
			c.ackNext = c.ackNext.Add(uint32(n))
			c.consumedLocked()
			return n, nil
		}
		if c.rerr != nil {
			return 0, c.rerr
		}
		if len(p) == 0 {
			return 0, nil
		}
		ch := c.waitChLocked()
		c.mu.Unlock()
		select {
		case <-ch:
		case <-dl:
		}
		c.mu.Lock()
	}
}

// consumedLocked sends the advanced ack promptly once a quarter of the window was consumed,
// else arms the delayed ACK (corrections.md M-a 8: without a prompt update a peer that filled
// the window stalls for the whole timer).
func (c *Conn) consumedLocked() {
	pending := c.ackNext.Sub(c.ackSent)
	if pending == 0 || c.rerr != nil {
		return
	}
	if pending >= WindowBytes(c.cfg.Window)/4 {
		c.queueAckLocked()
		return
	}
	if c.ackArmed {
		return
	}
	c.ackArmed = true
	if c.ackTimer == nil {
		c.ackTimer = time.AfterFunc(c.cfg.DelayedAck, c.delayedAck)
	} else {
		c.ackTimer.Reset(c.cfg.DelayedAck)
	}
}

func (c *Conn) delayedAck() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ackArmed = false
	if c.ackNext != c.ackSent && c.rerr == nil {
		c.queueAckLocked()
	}
}

func (c *Conn) queueAckLocked() {
	if !c.ackQueued {
		c.ackQueued = true
		c.s.queue(queued{ack: c})
	}
}

// ackHeader builds the bare ACK the writer goroutine sends; ok is false if the conn is gone.
func (c *Conn) ackHeader() (TCPHeader, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ackQueued = false
	if c.werr != nil || c.rerr != nil {
		return TCPHeader{}, false
	}
	c.ackSent = c.ackNext
	return c.headerLocked(FlagACK), true
}

func (c *Conn) headerLocked(flags TCPFlags) TCPHeader {
	return TCPHeader{SrcPort: c.cfg.LocalPort, DstPort: c.cfg.RemotePort, Seq: c.sndNxt,
		Ack: c.ackNext, Flags: flags, Window: c.cfg.Window}
}

// Write sends p in segments no larger than the send budget: the peer's window minus our
// unacknowledged bytes (§2.5). It blocks while the budget is 0.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for {
		if c.werr != nil {
			return n, c.werr
		}
		dl := c.wdl.wait()
		if expired(dl) {
			return n, timeoutError{}
		}
		if n == len(p) {
			return n, nil
		}
		// The budget is recomputed after every wake-up: the reader goroutine updates peerAck
		// and peerWin from each packet and broadcasts (no window probing, M-a 10).
		budget := Sendable(c.sndNxt, c.peerAck, c.peerWin)
		if budget == 0 {
			ch := c.waitChLocked()
			c.mu.Unlock()
			select {
			case <-ch:
			case <-dl:
			}
			c.mu.Lock()
			continue
		}
		// Reserve the sequence range under the lock, then write without it so the reader is
		// never held up by a slow link. wmu keeps our segments in order.
		k := min(len(p)-n, int(budget), c.cfg.MaxSegment)
		h := c.headerLocked(FlagACK) // data carries the current ack (piggy-back, M-a 8)
		c.sndNxt = c.sndNxt.Add(uint32(k))
		c.ackSent = c.ackNext
		c.mu.Unlock()
		err := c.s.writeSegment(h, p[n:n+k])
		c.mu.Lock()
		if err != nil {
			if c.werr == nil {
				c.werr = err
			}
			return n, c.werr
		}
		n += k
		if n == len(p) {
			return n, nil // written, even if a RST arrived meanwhile
		}
	}
}

// Close resets the connection (the mux has no FIN: RST is the only teardown, §2.5) and makes
// pending and future Reads and Writes fail with net.ErrClosed.
func (c *Conn) Close() error { return c.Reset("") }

// Reset closes the connection like Close, putting reason (if any) into the RST payload, which
// is how a device explains a reset (§2.5).
func (c *Conn) Reset(reason string) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("usbmux: close %s: %w", c.LocalAddr(), net.ErrClosed)
	}
	c.closed = true
	live := c.werr == nil
	rst := c.headerLocked(FlagRST)
	c.rerr = fmt.Errorf("usbmux: read %s: %w", c.LocalAddr(), net.ErrClosed)
	c.werr = fmt.Errorf("usbmux: write %s: %w", c.LocalAddr(), net.ErrClosed)
	c.stopLocked()
	c.mu.Unlock()
	c.rdl.stop()
	c.wdl.stop()
	c.s.remove(c)
	if live {
		c.s.queue(queued{seg: rst, payload: []byte(reason)})
	}
	return nil
}

// stopLocked releases buffers and timers once the connection is over.
func (c *Conn) stopLocked() {
	c.rbuf.Reset()
	if c.ackTimer != nil {
		c.ackTimer.Stop()
	}
	c.broadcastLocked()
}

// fail ends the connection because the link is gone; buffered data stays readable.
func (c *Conn) fail(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rerr == nil {
		c.rerr = cause
	}
	if c.werr == nil {
		c.werr = cause
	}
	if c.ackTimer != nil {
		c.ackTimer.Stop()
	}
	c.broadcastLocked()
}

// handleSegment processes one packet for this connection (reader goroutine). Flags other than
// exactly ACK end the connection (corrections.md M-a 6); the host answers every ACK packet with a
// bare ACK at once, the device never answers a pure ACK (M-a 7).
func (c *Conn) handleSegment(h TCPHeader, payload []byte) {
	c.mu.Lock()
	if c.werr != nil && c.rerr != nil {
		c.mu.Unlock()
		return
	}
	if h.Flags != FlagACK {
		c.peerResetLocked(h, payload)
		return
	}
	// usbmuxd takes ack and window at face value; keeping the larger ack only guards against a
	// reordered packet moving it backwards.
	c.peerAck = c.peerAck.Max(h.Ack)
	c.peerWin = WindowBytes(h.Window)
	if len(payload) > 0 {
		// There is no retransmission, so the byte stream must be contiguous. usbmuxd does not
		// check; we do, relative to the peer's own ISN from the SYN exchange, which turns a
		// duplicated transfer into a no-op and a lost one into a clear error.
		end := h.Seq.Add(uint32(len(payload)))
		switch {
		case c.cfg.IgnoreSeq:
			end = c.rcvNxt.Add(uint32(len(payload)))
		case h.Seq == c.rcvNxt:
		case end.LessThanEq(c.rcvNxt):
			payload = nil // duplicate of data already received
		default:
			c.abortLocked(fmt.Errorf("usbmux: %s: got seq %d, want %d: %w",
				c.LocalAddr(), uint32(h.Seq), uint32(c.rcvNxt), ErrSequence))
			return
		}
		if c.rbuf.Len()+len(payload) > c.cfg.RecvBuffer {
			c.abortLocked(fmt.Errorf("usbmux: %s: %d unread bytes + %d: %w",
				c.LocalAddr(), c.rbuf.Len(), len(payload), ErrOverflow))
			return
		}
		if len(payload) > 0 {
			c.rbuf.Write(payload)
			c.rcvNxt = end
		}
	}
	if c.host {
		c.queueAckLocked()
	}
	c.broadcastLocked()
	c.mu.Unlock()
}

// peerResetLocked handles RST or unexpected flags from the peer; unlocks c.mu. Buffered data
// remains readable (usbmuxd flushes it to the client before closing, M-a 13).
func (c *Conn) peerResetLocked(h TCPHeader, payload []byte) {
	reason := string(payload)
	for len(reason) > 0 && (reason[len(reason)-1] == '\n' || reason[len(reason)-1] == 0) {
		reason = reason[:len(reason)-1]
	}
	rerr := &ResetError{Reason: reason, Flags: h.Flags}
	c.werr = rerr
	if c.rerr == nil {
		c.rerr = rerr
		if reason == "" && h.Flags&FlagRST != 0 {
			c.rerr = io.EOF
		}
	}
	var rst TCPHeader
	sendRST := h.Flags&FlagRST == 0
	if sendRST {
		rst = c.headerLocked(FlagRST)
	}
	if c.ackTimer != nil {
		c.ackTimer.Stop()
	}
	c.broadcastLocked()
	c.mu.Unlock()
	c.s.remove(c)
	if sendRST {
		c.s.queue(queued{seg: rst})
	}
}

// abortLocked ends the connection on a local protocol error (overflow, gap) with a RST to the
// peer; unlocks c.mu.
func (c *Conn) abortLocked(err error) {
	c.werr, c.rerr = err, err
	rst := c.headerLocked(FlagRST)
	c.stopLocked()
	c.mu.Unlock()
	c.s.remove(c)
	c.s.queue(queued{seg: rst})
}
