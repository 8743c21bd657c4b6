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
	q         []*xfer // q[head:] are queued
	head      int
	off       int // bytes of q[head] already read
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
	held      *xfer
	holding   bool
}

// end is one side of the link; it implements usbmux.Link.
type end struct {
	f      *Faults
	name   string
	rx, tx *pipe
	closed bool  // guarded by f.mu
	lent   *xfer // handed out by ReadTransfer; guarded by f.mu
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
	e.f.mu.Lock()
	defer e.f.mu.Unlock()
	t, err := e.next()
	if err != nil {
		return 0, err
	}
	n := copy(p, t.b[e.rx.off:])
	if e.rx.off += n; e.rx.off == len(t.b) {
		e.rx.pop()
		t.release()
	}
	e.consumed(n)
	return n, nil
}

// ReadTransfer is Read without the copy (usbmux.TransferReader): it returns up to max bytes of
// the next transfer, valid until the next Read or ReadTransfer on this end.
func (e *end) ReadTransfer(max int) ([]byte, error) {
	e.f.mu.Lock()
	defer e.f.mu.Unlock()
	t, err := e.next()
	if err != nil {
		return nil, err
	}
	b := t.b[e.rx.off:]
	if len(b) > max {
		b = b[:max]
		e.rx.off += max
	} else {
		e.rx.pop()
		e.lent = t // recycled at the next read, when b is no longer used
	}
	e.consumed(len(b))
	return b, nil
}

// next recycles what the last ReadTransfer lent and waits for the transfer at the head of the
// receive queue (f.mu held): the read errors of both Read forms.
func (e *end) next() (*xfer, error) {
	f := e.f
	e.releaseLent()
	for {
		switch {
		case f.dropped:
			return nil, ErrDropped
		case e.closed:
			return nil, ErrClosed
		case len(e.rx.q) > e.rx.head && !e.rx.stalled:
			return e.rx.q[e.rx.head], nil
		case e.rx.wclosed && len(e.rx.q) == e.rx.head:
			return nil, io.EOF
		}
		e.rx.readable.Wait()
	}
}

// consumed accounts n bytes taken off the receive queue and wakes writers (f.mu held).
func (e *end) consumed(n int) {
	e.rx.queued -= n
	e.rx.writable.Broadcast()
}

// releaseLent recycles the transfer the last ReadTransfer handed out (f.mu held).
func (e *end) releaseLent() {
	if e.lent != nil {
		e.lent.release()
		e.lent = nil
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
	// The copy is made before taking the lock both directions share.
	t := newXfer(n)
	for _, b := range bufs {
		t.b = append(t.b, b...)
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
			tx.push(t)
			return n, nil
		}
		tx.writable.Wait()
	}
}

// xfer is one queued transfer. Buffers of the two common sizes (bare ACKs,
// data packets up to the largest mux packet) are recycled once read, which
// spares the allocation and zeroing of a buffer per transfer.
type xfer struct{ b []byte }

// Pooled transfer capacities.
const (
	smallXfer = 256
	largeXfer = usbmux.MaxDevicePacket
)

var smallPool, largePool sync.Pool

// newXfer returns an empty transfer with room for n bytes.
func newXfer(n int) *xfer {
	var pool *sync.Pool
	switch {
	case n <= smallXfer:
		pool = &smallPool
	case n <= largeXfer:
		pool = &largePool
	default:
		return &xfer{b: make([]byte, 0, n)}
	}
	if t, ok := pool.Get().(*xfer); ok {
		return t
	}
	if pool == &smallPool {
		return &xfer{b: make([]byte, 0, smallXfer)}
	}
	return &xfer{b: make([]byte, 0, largeXfer)}
}

// release recycles a transfer that was read completely.
func (t *xfer) release() {
	switch cap(t.b) {
	case smallXfer:
		t.b = t.b[:0]
		smallPool.Put(t)
	case largeXfer:
		t.b = t.b[:0]
		largePool.Put(t)
	}
}

// pop removes the transfer at the head of the queue (f.mu held). The queue
// slice is reused: reset when empty, compacted when mostly consumed.
func (tx *pipe) pop() {
	tx.q[tx.head] = nil
	tx.head++
	tx.off = 0
	switch {
	case tx.head == len(tx.q):
		tx.q, tx.head = tx.q[:0], 0
	case tx.head >= 64 && 2*tx.head >= len(tx.q):
		n := copy(tx.q, tx.q[tx.head:])
		clear(tx.q[n:])
		tx.q, tx.head = tx.q[:n], 0
	}
}

// push applies corruption, duplication and reordering and queues t (f.mu held).
func (tx *pipe) push(t *xfer) {
	if tx.corruptAt >= tx.written && tx.corruptAt < tx.written+int64(len(t.b)) {
		t.b[tx.corruptAt-tx.written] ^= 0xFF
		tx.corruptAt = -1
	}
	tx.written += int64(len(t.b))
	tx.transfers++
	if !tx.dupNext && !tx.reorder && !tx.holding {
		tx.q = append(tx.q, t)
		tx.queued += len(t.b)
		tx.readable.Broadcast()
		return
	}
	out := []*xfer{t}
	if tx.dupNext {
		tx.dupNext = false
		d := newXfer(len(t.b))
		d.b = append(d.b, t.b...)
		out = append(out, d)
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
		tx.queued += len(o.b)
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
		e.tx.queued += len(e.tx.held.b)
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
