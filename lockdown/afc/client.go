package afc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ServiceName is the lockdown name of the AFC media service.
const ServiceName = "com.apple.afc"

// ErrClosed is returned by operations on a closed Client.
var ErrClosed = errors.New("afc: client closed")

// ErrBroken is wrapped by every error after a transport failure or a
// cancelled request left the stream out of sync; the client must be closed.
var ErrBroken = errors.New("afc: connection unusable")

// Client is the host side of one AFC connection. Requests are serialised:
// each method sends one request and waits for its reply, holding mu, so a
// Client is safe for concurrent use but never pipelines. Cancelling ctx (or
// its deadline) interrupts the pending read or write through the conn's
// deadline; because the reply may still arrive later, the Client is then
// marked broken.
type Client struct {
	conn net.Conn
	f    *Framer

	mu     sync.Mutex // guards num, broken and the stream itself
	num    uint64     // last packet number sent; the first request is 1
	broken error

	closed    atomic.Bool // set by Close, which does not wait for mu
	closeOnce sync.Once
	closeErr  error
}

// NewClient returns a client on conn, an AFC service connection. The client
// owns conn and closes it in Close.
func NewClient(conn net.Conn) *Client {
	return &Client{conn: conn, f: NewFramer(conn, conn)}
}

// Close closes the connection, interrupting a request in flight (which then
// fails with ErrClosed). It is safe to call more than once and from any
// goroutine.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if err := c.conn.Close(); err != nil {
			c.closeErr = fmt.Errorf("afc: close: %w", err)
		}
	})
	return c.closeErr
}

var aLongTimeAgo = time.Unix(1, 0)

// roundTrip sends one request and returns its reply, checked for the echoed
// packet number and STATUS codes. path only decorates errors.
func (c *Client) roundTrip(ctx context.Context, op Opcode, path string, hd, payload []byte) (*Packet, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if c.broken != nil {
		return nil, c.broken
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("afc: %s: %w", op, context.Cause(ctx))
	}
	dl, _ := ctx.Deadline()
	_ = c.conn.SetDeadline(dl)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = c.conn.SetDeadline(aLongTimeAgo)
		close(fired)
	})
	c.num++
	num := c.num
	reply, err := c.exchange(&Packet{Num: num, Op: op, HeaderData: hd, Payload: payload})
	if !stop() && err == nil {
		// The reply is complete, so the stream is in sync, but ctx fired
		// meanwhile and set a past deadline: clear it once that is done,
		// and report the cause.
		<-fired
		_ = c.conn.SetDeadline(time.Time{})
		return nil, fmt.Errorf("afc: %s: %w", op, context.Cause(ctx))
	}
	if err != nil {
		if c.closed.Load() {
			err = ErrClosed
		} else if ctx.Err() != nil {
			err = context.Cause(ctx)
		} else if !dl.IsZero() && !time.Now().Before(dl) {
			// The conn deadline can fire just before ctx's own timer.
			err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		c.broken = fmt.Errorf("%w: %s: %w", ErrBroken, op, err)
		return nil, c.broken
	}
	if reply.Num != num {
		c.broken = fmt.Errorf("%w: %s: reply packet number %d, want %d", ErrBroken, op, reply.Num, num)
		return nil, c.broken
	}
	if reply.Op == OpStatus {
		code, ok := Uint64At(reply.Body(), 0)
		if !ok {
			return nil, fmt.Errorf("afc: %s: %w: short status", op, ErrMalformed)
		}
		if code != 0 {
			return nil, &Error{Op: op, Path: path, Status: Status(code)}
		}
	}
	return reply, nil
}

func (c *Client) exchange(p *Packet) (*Packet, error) {
	if err := c.f.WritePacket(p); err != nil {
		return nil, err
	}
	return c.f.ReadPacket()
}

// expect checks the reply operation against want; a STATUS 0 where data was
// expected is accepted as an empty body.
func expect(op Opcode, reply *Packet, want Opcode) error {
	if reply.Op == want || reply.Op == OpStatus {
		return nil
	}
	return fmt.Errorf("afc: %s: %w: unexpected reply %s", op, ErrMalformed, reply.Op)
}

func (c *Client) pathOp(ctx context.Context, op Opcode, path string) (*Packet, error) {
	return c.roundTrip(ctx, op, path, AppendCString(nil, path), nil)
}

// ReadDir lists a directory. The "." and ".." entries the device sends are
// left out.
func (c *Client) ReadDir(ctx context.Context, path string) ([]string, error) {
	reply, err := c.pathOp(ctx, OpReadDir, path)
	if err != nil {
		return nil, err
	}
	if err := expect(OpReadDir, reply, OpData); err != nil {
		return nil, err
	}
	var names []string
	for _, n := range ParseStrings(reply.Body()) {
		if n != "." && n != ".." {
			names = append(names, n)
		}
	}
	return names, nil
}

// Stat returns the GetFileInfo of path. A missing path gives an *Error with
// StatusObjectNotFound.
func (c *Client) Stat(ctx context.Context, path string) (*FileInfo, error) {
	reply, err := c.pathOp(ctx, OpGetFileInfo, path)
	if err != nil {
		return nil, err
	}
	if reply.Op != OpData {
		return nil, fmt.Errorf("afc: %s %q: %w: reply %s", OpGetFileInfo, path, ErrMalformed, reply.Op)
	}
	fi, err := ParseFileInfo(reply.Body())
	if err != nil {
		return nil, fmt.Errorf("afc: %s %q: %w", OpGetFileInfo, path, err)
	}
	return fi, nil
}

// DeviceInfo returns the GetDeviceInfo key/value list (Model, FSTotalBytes,
// FSFreeBytes, FSBlockSize).
func (c *Client) DeviceInfo(ctx context.Context) (map[string]string, error) {
	reply, err := c.roundTrip(ctx, OpGetDevInfo, "", nil, nil)
	if err != nil {
		return nil, err
	}
	if err := expect(OpGetDevInfo, reply, OpData); err != nil {
		return nil, err
	}
	kv, err := ParseKeyValues(reply.Body())
	if err != nil {
		return nil, fmt.Errorf("afc: %s: %w", OpGetDevInfo, err)
	}
	return kv, nil
}

// MakeDir creates a directory with its parents; an existing directory is
// not an error (devices answer status 0, §6 item 12).
func (c *Client) MakeDir(ctx context.Context, path string) error {
	_, err := c.pathOp(ctx, OpMakeDir, path)
	return err
}

// Remove removes a file or an empty directory. A non-empty directory gives
// an error matching ErrDirNotEmpty.
func (c *Client) Remove(ctx context.Context, path string) error {
	_, err := c.pathOp(ctx, OpRemovePath, path)
	return err
}

// RemoveAll removes path and everything below it (RemovePathAndContents).
func (c *Client) RemoveAll(ctx context.Context, path string) error {
	_, err := c.pathOp(ctx, OpRemovePathAndContents, path)
	return err
}

// Rename renames from to to.
func (c *Client) Rename(ctx context.Context, from, to string) error {
	_, err := c.roundTrip(ctx, OpRenamePath, from, AppendStrings(nil, from, to), nil)
	return err
}
