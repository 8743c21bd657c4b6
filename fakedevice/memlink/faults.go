package memlink

import (
	"fmt"
	"sync"
)

// Faults are the knobs of a link pair. Methods taking no Direction act on the device→host
// direction, which is what the host-side code under test receives; the *To variants choose.
// All methods are safe for concurrent use.
type Faults struct {
	mu               sync.Mutex
	toDevice, toHost *pipe
	host, device     *end
	dropped          bool
	stop             chan struct{} // closed on Drop or Close to interrupt rate-limit waits
	bucket           bucket
}

func (f *Faults) pipe(d Direction) *pipe {
	if d == ToDevice {
		return f.toDevice
	}
	return f.toHost
}

// stopCh returns the channel closed at the next Drop or Close (f.mu held).
func (f *Faults) stopCh() chan struct{} {
	if f.stop == nil {
		f.stop = make(chan struct{})
	}
	return f.stop
}

func (f *Faults) broadcastLocked() {
	for _, p := range []*pipe{f.toDevice, f.toHost} {
		p.readable.Broadcast()
		p.writable.Broadcast()
	}
	if f.stop != nil {
		close(f.stop)
		f.stop = nil
	}
}

// Drop pulls the cable: every pending and future Read and Write on both ends fails with
// ErrDropped and queued data is lost.
func (f *Faults) Drop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropped = true
	for _, p := range []*pipe{f.toDevice, f.toHost} {
		p.q, p.head, p.off, p.queued, p.held, p.holding = nil, 0, 0, 0, nil, false
	}
	f.broadcastLocked()
}

// Stall stops delivering transfers in both directions (writes still queue until the buffer is
// full), like a device that stops servicing its endpoints. Unstall resumes.
func (f *Faults) Stall() { f.setStall(true) }

// Unstall resumes delivery after Stall.
func (f *Faults) Unstall() { f.setStall(false) }

func (f *Faults) setStall(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.toDevice.stalled, f.toHost.stalled = on, on
	f.broadcastLocked()
}

// CorruptAfter flips (XOR 0xFF) the byte n bytes after everything written so far towards the
// host.
func (f *Faults) CorruptAfter(n int64) { f.CorruptAfterTo(ToHost, n) }

// CorruptAfterTo is CorruptAfter for direction d.
func (f *Faults) CorruptAfterTo(d Direction, n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pipe(d)
	p.corruptAt = p.written + n
}

// DuplicateNext delivers the next transfer towards the host twice.
func (f *Faults) DuplicateNext() { f.DuplicateNextTo(ToHost) }

// DuplicateNextTo is DuplicateNext for direction d.
func (f *Faults) DuplicateNextTo(d Direction) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pipe(d).dupNext = true
}

// ReorderNext holds the next transfer towards the host back and delivers it after the one
// following it.
func (f *Faults) ReorderNext() { f.ReorderNextTo(ToHost) }

// ReorderNextTo is ReorderNext for direction d.
func (f *Faults) ReorderNextTo(d Direction) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pipe(d).reorder = true
}

// RateLimit limits the bytes per second written, summed over both directions like a shared
// USB 2 bus (about 40e6 for real high-speed bulk throughput); 0 removes the limit.
func (f *Faults) RateLimit(bytesPerSec int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bucket.rate = bytesPerSec
}

// Stats returns how many transfers and bytes were written in direction d.
func (f *Faults) Stats(d Direction) (transfers, bytes int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pipe(d)
	return p.transfers, p.written
}

// Leaks reports, like gousb's fake context on exit, what a test left behind: ends that were
// never closed. Call it after the code under test has shut down.
func (f *Faults) Leaks() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var open []string
	for _, e := range []*end{f.host, f.device} {
		if !e.closed {
			open = append(open, e.name)
		}
	}
	if len(open) > 0 {
		return fmt.Errorf("memlink: ends never closed: %v", open)
	}
	return nil
}
