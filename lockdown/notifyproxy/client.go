package notifyproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// Errors that end a Client's reader, reported by Err.
var (
	// ErrProxyDeath: the device sent ProxyDeath (normally in answer to
	// Shutdown; without one the service died on the phone).
	ErrProxyDeath = errors.New("notifyproxy: proxy died")
	// ErrClosed: the Client was closed locally.
	ErrClosed = errors.New("notifyproxy: client closed")
	// ErrBroken is wrapped by write errors after a failed or interrupted
	// write: part of a message may have been sent, so no more can be.
	ErrBroken = errors.New("notifyproxy: connection unusable")
)

// DefaultBuffer is the capacity of the Notifications channel when
// Options.Buffer is 0.
const DefaultBuffer = 32

// Options tunes a Client. The zero value is fine.
type Options struct {
	// Buffer is the capacity of the Notifications channel (DefaultBuffer
	// when 0).
	Buffer int
}

// Client is the host side of one notification_proxy connection.
//
// Servicing contract. NewClient starts one reader goroutine that owns all
// reads from the connection. Every RelayNotification it reads is sent, in
// order, on the channel returned by Notifications, whose capacity is
// Options.Buffer. The caller is expected to read that channel for as long as
// it observes anything:
//   - while the buffer has room, nothing blocks;
//   - when the buffer is full, the reader waits for the consumer and stops
//     reading the connection meanwhile (back-pressure on the device);
//     notifications are never dropped while the client is open;
//   - after Shutdown or Close starts, undelivered and later notifications are
//     discarded, so an absent consumer can never block either of them.
//
// The channel is closed when the reader ends (ProxyDeath, EOF, a malformed
// message, or Close); Err then tells why and Done is closed. Unknown
// commands from the device are skipped. Observe and Post may be called from
// any goroutine.
type Client struct {
	conn net.Conn
	pc   *plistconn.Conn

	wmu    sync.Mutex // serialises writes and their deadlines; guards broken
	broken error      // set by a failed write: later writes fail at once

	notes    chan string
	stopOnce sync.Once
	stop     chan struct{} // closed by Shutdown/Close: discard deliveries
	done     chan struct{} // closed when the reader has ended
	err      error         // why the reader ended; written before done is closed

	closeOnce sync.Once
	closeErr  error
}

// NewClient starts a client on conn, a notification_proxy service
// connection. The client owns conn.
func NewClient(conn net.Conn, opts *Options) *Client {
	n := DefaultBuffer
	if opts != nil && opts.Buffer > 0 {
		n = opts.Buffer
	}
	c := &Client{
		conn:  conn,
		pc:    plistconn.New(conn, plistconn.XML),
		notes: make(chan string, n),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	c.pc.MaxSize = 1 << 20 // notification messages are tiny
	go c.readLoop()
	return c
}

// Notifications returns the channel of relayed notification names; see the
// servicing contract on Client.
func (c *Client) Notifications() <-chan string { return c.notes }

// Done is closed when the reader has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the reader ended, or nil while it runs. A device that
// closed the connection gives io.EOF.
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

func (c *Client) readLoop() {
	defer close(c.done)
	defer close(c.notes)
	for {
		b, err := c.pc.ReadRaw()
		if err != nil {
			select {
			case <-c.stop:
				c.err = ErrClosed
				if errors.Is(err, io.EOF) {
					c.err = io.EOF
				}
			default:
				c.err = fmt.Errorf("notifyproxy: read: %w", err)
				if errors.Is(err, io.EOF) {
					c.err = io.EOF
				}
			}
			return
		}
		m, err := DecodeMessage(b)
		if err != nil {
			c.err = err
			_ = c.conn.Close()
			return
		}
		switch m.Command {
		case CommandRelay:
			select {
			case c.notes <- m.Name:
			case <-c.stop:
			}
		case CommandProxyDeath:
			c.err = ErrProxyDeath
			return
		}
	}
}

// write sends one message, bounded by ctx through the write deadline.
func (c *Client) write(ctx context.Context, m Message) error {
	b, err := m.Encode(plistconn.XML)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("notifyproxy: %s: %w", m.Command, context.Cause(ctx))
	}
	if c.broken != nil {
		return c.broken
	}
	dl, _ := ctx.Deadline()
	_ = c.conn.SetWriteDeadline(dl)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = c.conn.SetWriteDeadline(time.Unix(1, 0))
		close(fired)
	})
	err = c.pc.WriteRaw(b)
	if !stop() {
		<-fired // the past deadline is set; clear it for the next write
		_ = c.conn.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		// Part of the message may have gone out: the stream is out of sync.
		c.broken = fmt.Errorf("%w: %s %q: %w", ErrBroken, m.Command, m.Name, err)
		return c.broken
	}
	return nil
}

// Observe asks the device to relay each of names. The device does not
// answer.
func (c *Client) Observe(ctx context.Context, names ...string) error {
	for _, n := range names {
		if err := c.write(ctx, Message{Command: CommandObserve, Name: n}); err != nil {
			return err
		}
	}
	return nil
}

// Post posts name on the device. The device does not answer.
func (c *Client) Post(ctx context.Context, name string) error {
	return c.write(ctx, Message{Command: CommandPost, Name: name})
}

// Shutdown sends Shutdown and waits until the device answers ProxyDeath or
// closes the connection (or ctx ends), then closes the client. Pending
// notifications are discarded. ProxyDeath and EOF count as success.
func (c *Client) Shutdown(ctx context.Context) error {
	c.stopOnce.Do(func() { close(c.stop) })
	werr := c.write(ctx, Message{Command: CommandShutdown})
	var err error
	if werr == nil {
		select {
		case <-c.done:
			if !errors.Is(c.err, ErrProxyDeath) && !errors.Is(c.err, io.EOF) {
				err = c.err
			}
		case <-ctx.Done():
			err = fmt.Errorf("notifyproxy: waiting for ProxyDeath: %w", context.Cause(ctx))
		}
	}
	cerr := c.Close()
	return errors.Join(werr, err, cerr)
}

// Close closes the connection at once and waits for the reader goroutine.
// It is safe to call more than once and concurrently with everything else.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.stopOnce.Do(func() { close(c.stop) })
		if err := c.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			c.closeErr = fmt.Errorf("notifyproxy: close: %w", err)
		}
		<-c.done
	})
	return c.closeErr
}
