// Package lockdown is the host side of lockdownd, the phone's gatekeeper on
// device port 62078: reading and writing device values, pairing (the
// "Trust this computer?" prompt), TLS sessions and starting services.
//
// A Client takes an already connected net.Conn and never dials it; the same
// code runs over the USB mux, a usbmuxd socket or an in-memory link to the
// fake device (STYLE rule 4). Facts: usb-usbmux-lockdown.md §4–§6 and
// libimobiledevice-client-needs.md §2–§3.
package lockdown

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/ibackup/ibackup/lockdown/pairrecord"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// Dialer opens a connection to a device port (host byte order). A
// *usbmux.Mux and the usbmuxd client satisfy it.
type Dialer interface {
	Dial(ctx context.Context, port uint16) (net.Conn, error)
}

// Options configure a Client. The zero value is usable.
type Options struct {
	// Label is sent with every request (§5.2); "ibackup" when empty.
	Label string
	// Timeout bounds each request/reply exchange when the context has no
	// earlier deadline; 30 s (libimobiledevice's value, §5.1) when zero.
	Timeout time.Duration
	// PairTimeout bounds the wait for the user to answer the Trust dialog;
	// 2 minutes when zero.
	PairTimeout time.Duration
	// PairInterval is the delay between Pair retries while the dialog is
	// pending (pymobiledevice3 polls once a second, §5.4); 1 s when zero.
	PairInterval time.Duration
	// HostName is sent with Pair (as pymobiledevice3 does); omitted when empty.
	HostName string
	// Now and Sleep replace the clock in tests; nil means the real clock.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// GenerateKey replaces RSA-2048 key generation (tests reuse keys); nil
	// means GenerateKey.
	GenerateKey KeyGenerator
	// Logger receives debug messages (never key material); nil discards.
	Logger *slog.Logger
}

// Client talks to lockdownd over one connection. Requests are serialised;
// a Client is safe for concurrent use but lockdown itself is strictly
// request/reply.
type Client struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex // serialises exchanges and guards the fields below
	raw       net.Conn   // the connection handed to NewClient
	tls       *tls.Conn  // non-nil while a TLS session is up
	pc        *plistconn.Conn
	sessionID string
	record    *pairrecord.Record // record of the running session
	version   string             // ProductVersion, when read
}

// NewClient returns a Client on conn, a connection to device port 62078.
// opts may be nil.
func NewClient(conn net.Conn, opts *Options) *Client {
	c := &Client{raw: conn, pc: plistconn.New(conn, plistconn.XML)}
	if opts != nil {
		c.opts = *opts
	}
	if c.opts.Label == "" {
		c.opts.Label = "ibackup"
	}
	if c.opts.Timeout <= 0 {
		c.opts.Timeout = 30 * time.Second
	}
	if c.opts.PairTimeout <= 0 {
		c.opts.PairTimeout = 2 * time.Minute
	}
	if c.opts.PairInterval <= 0 {
		c.opts.PairInterval = time.Second
	}
	if c.opts.Now == nil {
		c.opts.Now = time.Now
	}
	if c.opts.Sleep == nil {
		c.opts.Sleep = sleepCtx
	}
	if c.opts.GenerateKey == nil {
		c.opts.GenerateKey = GenerateKey
	}
	c.log = c.opts.Logger
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// exchange sends req and reads the reply, checking the Request echo against
// want ("" = don't check). The caller holds c.mu.
func (c *Client) exchange(ctx context.Context, req *Request, want string) (*Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req.Label = c.opts.Label
	conn := c.conn()
	deadline := time.Now().Add(c.opts.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("lockdown: %w", err)
	}
	// Cancelling ctx unblocks the read by moving the deadline to the past.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		stop()
		_ = conn.SetDeadline(time.Time{})
	}()
	c.log.Debug("lockdown request", "request", req.Request, "domain", req.Domain, "key", req.Key, "service", req.Service)
	if err := c.pc.WriteMessage(req); err != nil {
		return nil, c.ioErr(ctx, req.Request, err)
	}
	b, err := c.pc.ReadRaw()
	if err != nil {
		return nil, c.ioErr(ctx, req.Request, err)
	}
	resp, err := DecodeResponse(b, want)
	if err != nil {
		c.log.Debug("lockdown error", "request", req.Request, "err", err)
	}
	return resp, err
}

func (c *Client) ioErr(ctx context.Context, verb string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("lockdown: %s: %w", verb, ctx.Err())
	}
	return fmt.Errorf("lockdown: %s: %w", verb, err)
}

// conn is the connection requests currently travel on (TLS inside a session).
func (c *Client) conn() net.Conn {
	if c.tls != nil {
		return c.tls
	}
	return c.raw
}

// QueryType asks which lockdown is answering: TypeLockdown normally,
// "com.apple.mobile.restored" in restore mode. Like libimobiledevice it
// does not check the Request echo (§2.3).
func (c *Client) QueryType(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	resp, err := c.exchange(ctx, &Request{Request: "QueryType"}, "")
	if err != nil {
		return "", err
	}
	if resp.Type == "" {
		return "", errors.New("lockdown: QueryType reply has no Type")
	}
	return resp.Type, nil
}

// GetValue reads a value. domain "" is the root domain; key "" returns the
// whole domain as a map[string]any. Values are decoded plist types (string,
// uint64, float64, bool, []byte, []any, map[string]any, time.Time). A reply
// without Value returns (nil, nil), as libimobiledevice treats it.
func (c *Client) GetValue(ctx context.Context, domain, key string) (any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.getValue(ctx, domain, key)
}

func (c *Client) getValue(ctx context.Context, domain, key string) (any, error) {
	resp, err := c.exchange(ctx, &Request{Request: "GetValue", Domain: domain, Key: key}, "GetValue")
	if err != nil {
		return nil, err
	}
	if key == "ProductVersion" && domain == "" {
		if s, ok := resp.Value.(string); ok {
			c.version = s
		}
	}
	return resp.Value, nil
}

// SetValue writes a value (domain "" = root).
func (c *Client) SetValue(ctx context.Context, domain, key string, value any) error {
	if value == nil {
		return errors.New("lockdown: SetValue needs a value")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.exchange(ctx, &Request{Request: "SetValue", Domain: domain, Key: key, Value: value}, "SetValue")
	return err
}

// RemoveValue deletes a value (domain "" = root).
func (c *Client) RemoveValue(ctx context.Context, domain, key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.exchange(ctx, &Request{Request: "RemoveValue", Domain: domain, Key: key}, "RemoveValue")
	return err
}

// Goodbye tells lockdownd the client is done; the device closes the
// connection afterwards.
func (c *Client) Goodbye(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.exchange(ctx, &Request{Request: "Goodbye"}, "Goodbye")
	return err
}

// ProductVersion returns the ProductVersion read by GetValue or Connect,
// or "" if it was not read.
func (c *Client) ProductVersion() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// Close stops a running session (best effort, as libimobiledevice does when
// a client is freed, §5.5) and closes the connection. If a request is in
// flight, Close does not wait for it: closing the connection unblocks it.
func (c *Client) Close() error {
	if c.mu.TryLock() {
		active := c.sessionID != ""
		c.mu.Unlock()
		if active {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = c.StopSession(ctx)
			cancel()
		}
	}
	return c.raw.Close()
}
