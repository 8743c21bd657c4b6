// Package memlink is an in-memory usbmux.Link pair with fault knobs, standing in for a USB cable
// in tests and for the simulated phone. Unlike net.Pipe it is buffered both ways, so both sides
// may write first without deadlock (STYLE.md 14). Each Write is one transfer; Read returns at
// most one transfer (the rest of a transfer larger than the read buffer comes with the next
// Read), and a zero-length Write arrives as a zero-length Read, like a ZLP.
package memlink

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/ibackup/ibackup/usbmux"
)

// Errors returned by link ends.
var (
	// ErrDropped is returned by every operation after Faults.Drop: the cable was pulled.
	ErrDropped = errors.New("memlink: link dropped (device unplugged)")
	// ErrClosed is returned by operations on an end after its own Close.
	ErrClosed = fmt.Errorf("memlink: %w", net.ErrClosed)
	// ErrPeerClosed is returned by Write when the other end was closed.
	ErrPeerClosed = errors.New("memlink: peer closed")
)

// DefaultBuffer is the default number of bytes queued per direction before Write blocks.
const DefaultBuffer = 4 << 20

// Options configures a link pair.
type Options struct {
	// Buffer bounds the bytes queued in each direction (default DefaultBuffer). A single
	// transfer larger than the buffer is still accepted once the queue is empty.
	Buffer int
}

// Direction names one direction of the link.
type Direction int

// Directions.
const (
	ToDevice Direction = iota // host → device (bulk OUT)
	ToHost                    // device → host (bulk IN)
)

// String returns "to-device" or "to-host".
func (d Direction) String() string {
	if d == ToDevice {
		return "to-device"
	}
	return "to-host"
}

// pipe is one direction. All fields are guarded by the shared Faults.mu.
type pipe struct {
	f         *Faults
	dir       Direction
	q         [][]byte
	queued    int
	limit     int
	readable  *sync.Cond // signalled when q gains data or state changes
	writable  *sync.Cond // signalled when q loses data or state changes
	rclosed   bool       // receiving end closed
	wclosed   bool       // sending end closed
	stalled   bool
	corruptAt int64 // byte offset (in written) to corrupt, -1 none
	written   int64
	transfers int64
	dupNext   bool
	reorder   bool
	held      []byte
	holding   bool
}

// end is one side of the link; it implements usbmux.Link.
type end struct {
	f      *Faults
	name   string
	rx, tx *pipe
	closed bool // guarded by f.mu
}

// New returns the host end and the device end of a buffered link and the fault knobs.
func New(opts Options) (host, device usbmux.Link, f *Faults) {
	if opts.Buffer <= 0 {
		opts.Buffer = DefaultBuffer
	}
	f = &Faults{}
	f.bucket.f = f
	mk := func(d Direction) *pipe {
		p := &pipe{f: f, dir: d, limit: opts.Buffer, corruptAt: -1}
		p.readable = sync.NewCond(&f.mu)
		p.writable = sync.NewCond(&f.mu)
		return p
	}
	f.toDevice, f.toHost = mk(ToDevice), mk(ToHost)
	f.host = &end{f: f, name: "host", rx: f.toHost, tx: f.toDevice}
	f.device = &end{f: f, name: "device", rx: f.toDevice, tx: f.toHost}
	return f.host, f.device, f
}

// Read returns (part of) the next transfer sent by the other end, blocking until there is one.
// After the other end closed and everything was read it returns io.EOF.
func (e *end) Read(p []byte) (int, error) {
	f := e.f
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		switch {
		case f.dropped:
			return 0, ErrDropped
		case e.closed:
			return 0, ErrClosed
		case len(e.rx.q) > 0 && !e.rx.stalled:
			t := e.rx.q[0]
			n := copy(p, t)
			if n < len(t) {
				e.rx.q[0] = t[n:]
			} else {
				e.rx.q[0] = nil
				e.rx.q = e.rx.q[1:]
			}
			e.rx.queued -= n
			e.rx.writable.Broadcast()
			return n, nil
		case e.rx.wclosed && len(e.rx.q) == 0:
			return 0, io.EOF
		}
		e.rx.readable.Wait()
	}
}

// Write queues one transfer for the other end, applying the rate limit and armed faults.
func (e *end) Write(p []byte) (int, error) {
	return e.WriteBuffers([][]byte{p})
}

// WriteBuffers queues the concatenation of bufs as one transfer (usbmux.BuffersWriter).
func (e *end) WriteBuffers(bufs [][]byte) (int, error) {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	if err := e.f.bucket.take(n, e); err != nil {
		return 0, err
	}
	f := e.f
	f.mu.Lock()
	defer f.mu.Unlock()
	tx := e.tx
	for {
		switch {
		case f.dropped:
			return 0, ErrDropped
		case e.closed:
			return 0, ErrClosed
		case tx.rclosed:
			return 0, ErrPeerClosed
		case tx.queued == 0 || tx.queued+n <= tx.limit:
			t := make([]byte, 0, n)
			for _, b := range bufs {
				t = append(t, b...)
			}
			tx.push(t)
			return n, nil
		}
		tx.writable.Wait()
	}
}

// push applies corruption, duplication and reordering and queues t (f.mu held).
func (tx *pipe) push(t []byte) {
	if tx.corruptAt >= tx.written && tx.corruptAt < tx.written+int64(len(t)) {
		t[tx.corruptAt-tx.written] ^= 0xFF
		tx.corruptAt = -1
	}
	tx.written += int64(len(t))
	tx.transfers++
	out := [][]byte{t}
	if tx.dupNext {
		tx.dupNext = false
		out = append(out, append([]byte(nil), t...))
	}
	if tx.reorder {
		tx.reorder, tx.holding, tx.held = false, true, t
		return
	}
	if tx.holding {
		tx.holding = false
		out = append(out, tx.held)
		tx.held = nil
	}
	for _, o := range out {
		tx.q = append(tx.q, o)
		tx.queued += len(o)
	}
	tx.readable.Broadcast()
}

// Close closes this end: its own operations fail with ErrClosed, the other end reads io.EOF
// after the queued data and its writes fail with ErrPeerClosed.
func (e *end) Close() error {
	f := e.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	e.closed = true
	e.rx.rclosed = true
	e.tx.wclosed = true
	if e.tx.holding { // a held (reordered) transfer is delivered rather than lost
		e.tx.holding = false
		e.tx.q = append(e.tx.q, e.tx.held)
		e.tx.queued += len(e.tx.held)
		e.tx.held = nil
	}
	f.broadcastLocked()
	return nil
}

// bucket is a token bucket in "debt" form: a transfer takes its bytes at once and the writer
// then waits until the debt is paid at the configured rate.
type bucket struct {
	f    *Faults
	rate int64     // bytes per second, 0 = unlimited; guarded by f.mu
	next time.Time // when the bus is free again; guarded by f.mu
}

// lateSlack is how far a writer may lag the bus schedule and still be
// credited the lag (see take).
const lateSlack = 20 * time.Millisecond

func (b *bucket) take(n int, e *end) error {
	f := b.f
	f.mu.Lock()
	if b.rate <= 0 || n == 0 {
		f.mu.Unlock()
		return nil
	}
	now := time.Now()
	// A writer that shows up a little after the bus became free (it woke
	// late from its timer, or spent a moment producing the transfer) keeps
	// that time: forgetting it on every transfer held the achieved rate far
	// below the limit with small transfers. Only an idle gap longer than
	// lateSlack starts the schedule afresh.
	if now.Sub(b.next) > lateSlack {
		b.next = now
	}
	b.next = b.next.Add(time.Duration(int64(n) * int64(time.Second) / b.rate))
	wait := b.next.Sub(now)
	stop := f.stopCh()
	f.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-stop:
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.dropped {
			return ErrDropped
		}
		if e.closed {
			return ErrClosed
		}
		return nil
	}
}
