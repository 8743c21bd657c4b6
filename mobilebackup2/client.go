// Package mobilebackup2 is the host side of Apple's backup service
// (com.apple.mobilebackup2): the DeviceLink handshake, the Backup request,
// and an engine that answers the phone's file requests one at a time
// against a versioned backup directory (snapshot package), verifying every
// file before the new version replaces the last good one.
//
// Facts: mobilebackup2-and-backup-format.md §1–§5, §8;
// libimobiledevice-client-needs.md §4.
package mobilebackup2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/ibackup/ibackup/lockdown/plistconn"
	"github.com/ibackup/ibackup/mobilebackup2/devicelink"
)

// SupportedProtocolVersions is what Hello offers (§2.1).
var supportedProtocolVersions = []float64{2.0, 2.1}

// Client talks to one mobilebackup2 service connection. It is not safe for
// concurrent use: one request runs at a time on the caller's goroutine.
type Client struct {
	conn     net.Conn
	ic       *idleConn // conn, with the optional inactivity timeout
	dl       *devicelink.Conn
	version  float64
	dlMajor  int64
	handshok bool
}

// NewClient returns a client on conn, a connection from
// StartService("com.apple.mobilebackup2", escrow=true). It never dials.
func NewClient(conn net.Conn) *Client {
	ic := &idleConn{Conn: conn}
	return &Client{conn: ic, ic: ic, dl: devicelink.NewConn(ic, plistconn.Binary)}
}

// ProtocolVersion returns the version the phone chose in Hello (0 before
// Handshake).
func (c *Client) ProtocolVersion() float64 { return c.version }

// DeviceLinkVersion returns the phone's DeviceLink major version.
func (c *Client) DeviceLinkVersion() int64 { return c.dlMajor }

// watch makes ctx cancellation unblock reads and writes on the connection.
// The returned stop must be called when the operation ends.
func (c *Client) watch(ctx context.Context) (stop func()) {
	s := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	return func() { s() }
}

// Handshake runs the DeviceLink version exchange (accepting any major ≥ 300
// and echoing it, §1.3) and Hello with 2.0/2.1 (§2.1). It returns the
// negotiated protocol version.
func (c *Client) Handshake(ctx context.Context) (float64, error) {
	defer c.watch(ctx)()
	major, _, err := c.dl.VersionExchange()
	if err != nil {
		return 0, c.ctxErr(ctx, err)
	}
	c.dlMajor = major
	hello := map[string]any{"MessageName": "Hello", "SupportedProtocolVersions": supportedProtocolVersions}
	if err := c.dl.WriteProcessMessage(hello); err != nil {
		return 0, c.ctxErr(ctx, err)
	}
	m, err := c.dl.Read()
	if err != nil {
		return 0, c.ctxErr(ctx, err)
	}
	d, ok := m.Arg(0).(map[string]any)
	if m.Name != devicelink.MsgProcessMessage || !ok {
		return 0, fmt.Errorf("%w: Hello answered with %s", ErrProtocol, m.Name)
	}
	code, ok := devicelink.Int(d["ErrorCode"])
	if !ok {
		return 0, fmt.Errorf("%w: Hello reply without ErrorCode", ErrProtocol)
	}
	switch code {
	case 0:
	case 1:
		return 0, ErrNoCommonVersion
	default:
		desc, _ := d["ErrorDescription"].(string)
		return 0, &DeviceError{Code: code, Description: desc}
	}
	v, ok := devicelink.Float(d["ProtocolVersion"])
	if !ok {
		return 0, fmt.Errorf("%w: Hello reply without ProtocolVersion", ErrProtocol)
	}
	c.version, c.handshok = v, true
	return v, nil
}

// ctxErr prefers the context's cause over the I/O error it provoked.
func (c *Client) ctxErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil {
		return fmt.Errorf("mobilebackup2: %w", cause)
	}
	if errors.Is(err, devicelink.ErrProtocol) {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return fmt.Errorf("%w: %w", ErrDisconnected, err)
}

// Close sends DLMessageDisconnect (best effort) and closes the connection.
func (c *Client) Close() error {
	if c.handshok {
		_ = c.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_ = c.dl.Disconnect()
	}
	return c.conn.Close()
}
