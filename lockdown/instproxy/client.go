package instproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// ErrClosed is returned after Close.
var ErrClosed = errors.New("instproxy: client closed")

// Client is the host side of one installation_proxy connection. Commands
// are serialised: one runs at a time, holding mu until its last reply.
// Cancelling ctx interrupts it through the conn's deadline and leaves the
// client unusable (replies of the interrupted command may still arrive).
type Client struct {
	conn net.Conn
	pc   *plistconn.Conn

	mu     sync.Mutex // held for a whole command; guards broken
	broken error

	closed    atomic.Bool // set by Close, which does not wait for mu
	closeOnce sync.Once
	closeErr  error
}

// NewClient returns a client on conn, an installation_proxy service
// connection. The client owns conn.
func NewClient(conn net.Conn) *Client {
	return &Client{conn: conn, pc: plistconn.New(conn, plistconn.XML)}
}

// Close closes the connection, interrupting a command in flight. It is safe
// to call more than once and from any goroutine.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if err := c.conn.Close(); err != nil {
			c.closeErr = fmt.Errorf("instproxy: close: %w", err)
		}
	})
	return c.closeErr
}

// BrowseOptions selects what Browse returns. An empty ApplicationType lets
// the device choose (all types); nil ReturnAttributes returns every
// attribute.
type BrowseOptions struct {
	ApplicationType  string
	ReturnAttributes []string
}

// Browse sends {Command:"Browse", ClientOptions:{…}} and calls fn for every
// app as the device streams BrowsingApplications replies, until Complete.
// An Error reply ends it with an *Error; an error from fn stops reading and
// leaves the client unusable (the rest of the stream is unread).
func (c *Client) Browse(ctx context.Context, opts BrowseOptions, fn func(App) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return ErrClosed
	}
	if c.broken != nil {
		return c.broken
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("instproxy: browse: %w", context.Cause(ctx))
	}
	dl, _ := ctx.Deadline()
	_ = c.conn.SetDeadline(dl)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = c.conn.SetDeadline(time.Unix(1, 0))
		close(fired)
	})

	req := Request{Command: "Browse"}
	if opts.ApplicationType != "" || opts.ReturnAttributes != nil {
		req.ClientOptions = &ClientOptions{ApplicationType: opts.ApplicationType, ReturnAttributes: opts.ReturnAttributes}
	}
	err := c.browse(req, fn)
	if !stop() {
		<-fired // clear the past deadline for the next command
		_ = c.conn.SetDeadline(time.Time{})
	}
	if err != nil {
		var devErr *Error
		if errors.As(err, &devErr) {
			return err // the device ended the command; the stream is in sync
		}
		if c.closed.Load() {
			err = fmt.Errorf("%w (%w)", ErrClosed, err)
		} else if ctx.Err() != nil {
			err = fmt.Errorf("instproxy: browse: %w", context.Cause(ctx))
		}
		c.broken = err
	}
	return err
}

func (c *Client) browse(req Request, fn func(App) error) error {
	if err := c.pc.WriteMessage(req); err != nil {
		return fmt.Errorf("instproxy: browse: %w", err)
	}
	for {
		b, err := c.pc.ReadRaw()
		if err != nil {
			return fmt.Errorf("instproxy: browse: %w", err)
		}
		r, err := DecodeResponse(b)
		if err != nil {
			return err
		}
		if r.Error != "" {
			return &Error{Code: r.Error, Description: r.ErrorDescription}
		}
		for _, app := range r.Apps() {
			if err := fn(app); err != nil {
				return err
			}
		}
		switch r.Status {
		case StatusComplete:
			return nil
		case "":
			return fmt.Errorf("%w: reply without Status", ErrMalformed)
		}
	}
}

// BrowseAll collects every app Browse streams.
func (c *Client) BrowseAll(ctx context.Context, opts BrowseOptions) ([]App, error) {
	var apps []App
	err := c.Browse(ctx, opts, func(a App) error {
		apps = append(apps, a)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return apps, nil
}
