package mobilebackup2

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrStalled reports that the phone sent and accepted nothing for longer than
// the idle timeout set with Client.SetIdleTimeout.
var ErrStalled = errors.New("mobilebackup2: the phone stopped responding")

// idleConn gives every Read and Write a fresh deadline of now+idle, turning
// the deadlines into an inactivity timeout. With idle 0 (the default) it
// only forwards: a real phone may be silent for minutes while it builds its
// snapshot or waits for its passcode (mobilebackup2-and-backup-format.md
// §2.7), so an inactivity limit is the caller's choice.
//
// A deadline set from outside (context cancellation sets one in the past)
// pins the deadlines: later Reads and Writes no longer move them.
type idleConn struct {
	net.Conn
	idle    atomic.Int64 // time.Duration
	last    atomic.Int64 // unix nanos of the last Read or Write that moved bytes
	stalled atomic.Bool  // the watchdog gave up on the phone
	mu      sync.Mutex
	pinned  bool
}

func (c *idleConn) arm(set func(time.Time) error) {
	d := time.Duration(c.idle.Load())
	if d <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.pinned {
		_ = set(time.Now().Add(d))
	}
}

func (c *idleConn) Read(p []byte) (int, error) {
	c.arm(c.Conn.SetReadDeadline)
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *idleConn) Write(p []byte) (int, error) {
	c.arm(c.Conn.SetWriteDeadline)
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *idleConn) pin(set func(time.Time) error, t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pinned = true
	return set(t)
}

func (c *idleConn) SetDeadline(t time.Time) error      { return c.pin(c.Conn.SetDeadline, t) }
func (c *idleConn) SetReadDeadline(t time.Time) error  { return c.pin(c.Conn.SetReadDeadline, t) }
func (c *idleConn) SetWriteDeadline(t time.Time) error { return c.pin(c.Conn.SetWriteDeadline, t) }

// SetIdleTimeout makes a backup, restore or password change fail with
// ErrStalled when the phone neither sends nor accepts a byte for d. Zero, the
// default, waits as long as the phone takes.
func (c *Client) SetIdleTimeout(d time.Duration) { c.ic.idle.Store(int64(d)) }

// watchIdle runs, while an operation lasts, a watchdog for writes that block
// below the connection (a stalled USB link does not honour deadlines): when
// nothing has moved for the idle timeout it expires the connection's
// deadlines and calls onStall, which should tear the transport down the way
// an unplug would. The returned stop ends the watchdog and waits for it.
func (c *Client) watchIdle(onStall func()) (stop func()) {
	d := time.Duration(c.ic.idle.Load())
	if d <= 0 {
		return func() {}
	}
	c.ic.last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(max(d/4, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if now.Sub(time.Unix(0, c.ic.last.Load())) < d {
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

// stalled maps an inactivity timeout, or an error after the watchdog gave
// up, to ErrStalled.
func (c *Client) stalled(err error) error {
	d := time.Duration(c.ic.idle.Load())
	var ne net.Error
	if d > 0 && (c.ic.stalled.Load() || errors.As(err, &ne) && ne.Timeout()) {
		return &stallError{idle: d, err: err}
	}
	return nil
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
