package mobilebackup2

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// ErrStalled reports that the phone sent and accepted nothing for longer than
// the idle timeout set with Client.SetIdleTimeout.
var ErrStalled = errors.New("mobilebackup2: the phone stopped responding")

// idleConn counts the Reads and Writes that move bytes, so a watchdog
// (Client.watchIdle) can tell a phone that went quiet. With no idle timeout
// (the default) nothing watches: a real phone may be silent for minutes while
// it builds its snapshot or waits for its passcode
// (mobilebackup2-and-backup-format.md §2.7), so an inactivity limit is the
// caller's choice. The hot path pays one atomic add per call.
type idleConn struct {
	net.Conn
	idle    atomic.Int64  // time.Duration; 0 = no limit
	moved   atomic.Uint64 // Reads and Writes that moved bytes
	stalled atomic.Bool   // the watchdog gave up on the phone
}

func (c *idleConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.moved.Add(1)
	}
	return n, err
}

func (c *idleConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.moved.Add(1)
	}
	return n, err
}

// SetIdleTimeout makes a backup or restore fail with
// ErrStalled when the phone neither sends nor accepts a byte for d. Zero, the
// default, waits as long as the phone takes.
func (c *Client) SetIdleTimeout(d time.Duration) { c.ic.idle.Store(int64(d)) }

// watchIdle runs a watchdog while a backup or restore lasts. When nothing
// has moved for the idle timeout it marks the client stalled, expires the
// connection's deadlines and calls onStall, which should drop the transport
// the way an unplug would: a write stuck on a stalled USB link sees no
// deadline. The returned stop ends the watchdog and waits for it.
func (c *Client) watchIdle(onStall func()) (stop func()) {
	d := time.Duration(c.ic.idle.Load())
	if d <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(max(d/4, time.Millisecond))
		defer t.Stop()
		seen, since := c.ic.moved.Load(), time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if m := c.ic.moved.Load(); m != seen {
					seen, since = m, now
					continue
				}
				if now.Sub(since) < d {
					continue
				}
				c.ic.stalled.Store(true)
				_ = c.ic.SetDeadline(time.Unix(1, 0))
				if onStall != nil {
					onStall()
				}
				return
			}
		}
	}()
	return func() { close(done); <-exited }
}

// stalled maps an error that followed the watchdog giving up to ErrStalled
// (nil otherwise).
func (c *Client) stalled(err error) error {
	if !c.ic.stalled.Load() {
		return nil
	}
	return &stallError{idle: time.Duration(c.ic.idle.Load()), err: err}
}

// stallError is ErrStalled with its cause and a hint for the user.
type stallError struct {
	idle time.Duration
	err  error
}

func (e *stallError) Error() string {
	return fmt.Sprintf("%v: nothing moved for %v: %v", ErrStalled, e.idle, e.err)
}

func (e *stallError) Unwrap() []error { return []error{ErrStalled, e.err} }

// Hint says what to do about a phone that stopped responding.
func (e *stallError) Hint() string { return Hint(ErrStalled) }
