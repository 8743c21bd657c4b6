package usbmux

import (
	"sync"
	"time"
)

// deadline is a settable point in time that closes a channel when it passes, in the manner of
// pion/transport/deadline. A waiter selects on wait(); setting a new deadline replaces the channel
// only if the old one already fired, so the owner must also wake waiters after set (Conn does
// this with its change broadcast) so they re-fetch the channel.
type deadline struct {
	mu      sync.Mutex
	ch      chan struct{}
	timer   *time.Timer
	expired bool
	gen     uint64 // invalidates timers of earlier set calls
}

func newDeadline() *deadline { return &deadline{ch: make(chan struct{})} }

// set arms the deadline at t; the zero time disarms it, a past time fires it at once.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.expired {
		d.ch = make(chan struct{})
		d.expired = false
	}
	if t.IsZero() {
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		close(d.ch)
		d.expired = true
		return
	}
	gen := d.gen
	d.timer = time.AfterFunc(dur, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen == gen && !d.expired {
			close(d.ch)
			d.expired = true
		}
	})
}

// wait returns a channel closed once the deadline has passed.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

// stop disarms any pending timer (on Close) so no goroutine outlives the conn.
func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}
