package usbmuxd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/ibackup/ibackup/lockdown/pairrecord"
)

// ClientOptions configures a Client. The zero value is usable.
type ClientOptions struct {
	// ProgName and ClientVersionString identify us in every plist request
	// (§3.4); "ibackup" and "ibackup-usbmuxd" when empty.
	ProgName            string
	ClientVersionString string
	// Protocol selects the message family for Listen and Connect, and for
	// listing devices (binary lists by listening, as libusbmuxd does).
	// ProtoPlist (the default) switches to binary by itself when the daemon
	// answers BADVERSION (§3.3). Pair-record commands are always plist.
	Protocol ProtoVersion
	// Timeout bounds each request until its reply (10 s when 0); a context
	// deadline that comes earlier wins.
	Timeout time.Duration
	// ListQuiet ends a binary device listing when no DEVICE_ADD arrived for
	// this long (100 ms when 0, like libusbmuxd).
	ListQuiet time.Duration
	// MaxReplySize bounds replies (DefaultMaxReplySize when 0).
	MaxReplySize int
}

// Client talks to a usbmuxd-compatible daemon. Like libusbmuxd it opens a
// new socket for every request. It is safe for concurrent use.
type Client struct {
	addr   string
	opts   ClientOptions
	dialer net.Dialer
	tag    atomic.Uint32
	binary atomic.Bool // the daemon refused the plist protocol
}

// NewClient returns a Client for the daemon at addr ("UNIX:/path",
// "host:port" or a plain socket path, see ParseAddress). It does not
// connect yet.
func NewClient(addr string, opts *ClientOptions) (*Client, error) {
	if _, _, err := ParseAddress(addr); err != nil {
		return nil, err
	}
	c := &Client{addr: addr}
	if opts != nil {
		c.opts = *opts
	}
	if c.opts.ProgName == "" {
		c.opts.ProgName = "ibackup"
	}
	if c.opts.ClientVersionString == "" {
		c.opts.ClientVersionString = "ibackup-usbmuxd"
	}
	if c.opts.Timeout <= 0 {
		c.opts.Timeout = 10 * time.Second
	}
	if c.opts.ListQuiet <= 0 {
		c.opts.ListQuiet = 100 * time.Millisecond
	}
	if c.opts.MaxReplySize <= 0 {
		c.opts.MaxReplySize = DefaultMaxReplySize
	}
	c.binary.Store(c.opts.Protocol == ProtoBinary)
	c.dialer.Timeout = c.opts.Timeout
	return c, nil
}

// session is one socket to the daemon during a request.
type session struct {
	conn net.Conn
	fr   *Framer
	stop func() bool // detaches ctx from the conn
	ctx  context.Context
}

// open connects and arranges for ctx to abort blocking I/O until release.
func (c *Client) open(ctx context.Context) (*session, error) {
	conn, err := dialAddress(ctx, &c.dialer, c.addr)
	if err != nil {
		return nil, err
	}
	// The deadline covers the request and its reply only; Connect and
	// Listen clear it once the socket changes role.
	deadline := time.Now().Add(c.opts.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	fr := NewFramer(conn, conn)
	fr.MaxSize = c.opts.MaxReplySize
	return &session{conn: conn, fr: fr, ctx: ctx, stop: context.AfterFunc(ctx, func() { conn.Close() })}, nil
}

// release detaches ctx and clears deadlines, keeping the conn for the
// caller; it fails if ctx already closed it.
func (s *session) release() error {
	if !s.stop() {
		return s.ctx.Err()
	}
	if err := s.conn.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("usbmuxd: %w", err)
	}
	return nil
}

func (s *session) close() {
	s.stop()
	s.conn.Close()
}

// wrap prefers the context's error over the I/O error it caused.
func (s *session) wrap(op string, err error) error {
	if ctxErr := s.ctx.Err(); ctxErr != nil {
		return fmt.Errorf("usbmuxd: %s: %w", op, ctxErr)
	}
	// The socket deadline is the context's deadline when that is earlier;
	// it may fire just before the context notices.
	if d, ok := s.ctx.Deadline(); ok && isTimeout(err) && !time.Now().Before(d) {
		return fmt.Errorf("usbmuxd: %s: %w", op, context.DeadlineExceeded)
	}
	return fmt.Errorf("usbmuxd: %s: %w", op, err)
}

func (c *Client) newRequest(messageType string) *Request {
	return &Request{
		MessageType:         messageType,
		ClientVersionString: c.opts.ClientVersionString,
		ProgName:            c.opts.ProgName,
		LibUSBMuxVersion:    3,
	}
}

func (c *Client) nextTag() uint32 {
	for {
		if t := c.tag.Add(1); t != 0 {
			return t
		}
	}
}

// sendPlist writes a plist request and returns its tag.
func (s *session) sendPlist(req *Request, tag uint32) error {
	b, err := req.Marshal()
	if err != nil {
		return err
	}
	if err := s.fr.WriteFrame(&Frame{Version: ProtoPlist, Type: TypePlist, Tag: tag, Payload: b}); err != nil {
		return s.wrap(req.MessageType, err)
	}
	return nil
}

// readReply reads one message and decodes it as a plist or binary result.
// A binary RESULT comes back as a Reply with MessageType "Result".
func (s *session) readReply(op string) (*Reply, error) {
	fr, err := s.fr.ReadFrame()
	if err != nil {
		return nil, s.wrap(op, err)
	}
	switch fr.Type {
	case TypePlist:
		r, err := ParseReply(fr.Payload)
		if err != nil {
			return nil, fmt.Errorf("usbmuxd: %s reply: %w", op, err)
		}
		return r, nil
	case TypeResult:
		code, err := ParseResult(fr.Payload)
		if err != nil {
			return nil, fmt.Errorf("usbmuxd: %s reply: %w", op, err)
		}
		return &Reply{MessageType: MsgResult, Number: uint64(code)}, nil
	}
	return nil, fmt.Errorf("usbmuxd: %s: unexpected %v reply", op, fr.Type)
}

// roundTrip sends one plist request on a fresh socket and returns the reply;
// a non-zero Result becomes a *ResultError.
func (c *Client) roundTrip(ctx context.Context, req *Request) (*Reply, error) {
	s, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if err := s.sendPlist(req, c.nextTag()); err != nil {
		return nil, err
	}
	r, err := s.readReply(req.MessageType)
	if err != nil {
		return nil, err
	}
	// Replies without MessageType (ListDevices, ReadBUID, ReadPairRecord)
	// count as success, as in libusbmuxd (§1.4).
	if r.MessageType == MsgResult && r.Number != 0 {
		return r, &ResultError{Op: req.MessageType, Code: ResultCode(r.Number)}
	}
	return r, nil
}

// Devices lists the attached devices. With the plist protocol this is one
// ListDevices request; if the daemon refuses it, or in binary mode, the
// list is collected from a Listen socket until it is quiet (§3.4.1).
func (c *Client) Devices(ctx context.Context) ([]Device, error) {
	// libusbmuxd's order (corrections.md A5): ListDevices first; any
	// non-zero Result falls back to listening, and only BADVERSION also
	// switches to the binary protocol.
	if !c.binary.Load() {
		r, err := c.roundTrip(ctx, c.newRequest(MsgListDevices))
		var re *ResultError
		switch {
		case err == nil && r.MessageType == "":
			out := make([]Device, 0, len(r.DeviceList))
			for _, e := range r.DeviceList {
				out = append(out, deviceFromProperties(e.DeviceID, &e.Properties))
			}
			return out, nil
		case err == nil:
			return nil, fmt.Errorf("usbmuxd: ListDevices: unexpected %q reply", r.MessageType)
		case errors.As(err, &re):
			if re.Code == ResultBadVersion {
				c.binary.Store(true)
			}
		default:
			return nil, err
		}
	}
	return c.collectDevices(ctx)
}

// collectDevices lists devices by listening until ListQuiet passes without
// an event.
func (c *Client) collectDevices(ctx context.Context) ([]Device, error) {
	sub, err := c.Listen(ctx)
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	var devs []Device
	t := time.NewTimer(c.opts.ListQuiet)
	defer t.Stop()
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				if err := sub.Err(); err != nil {
					return nil, err
				}
				return devs, nil
			}
			switch ev.Kind {
			case Attached:
				devs = append(devs, ev.Device)
			case Detached:
				for i, d := range devs {
					if d.ID == ev.Device.ID {
						devs = append(devs[:i], devs[i+1:]...)
						break
					}
				}
			}
			t.Reset(c.opts.ListQuiet)
		case <-t.C:
			return devs, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("usbmuxd: listing devices: %w", ctx.Err())
		}
	}
}

// Device returns the attached device with the given UDID, or an error
// wrapping ErrNoDevice.
func (c *Client) Device(ctx context.Context, udid string) (Device, error) {
	devs, err := c.Devices(ctx)
	if err != nil {
		return Device{}, err
	}
	for _, d := range devs {
		if d.UDID == udid {
			return d, nil
		}
	}
	return Device{}, fmt.Errorf("%w: %s", ErrNoDevice, udid)
}

// Connect opens a stream to port (host byte order, e.g. 62078) of the
// device with the given ID. The returned conn is the raw stream (§3.6). A
// refusal is a *ResultError matching ErrConnRefused or ErrBadDevice.
func (c *Client) Connect(ctx context.Context, deviceID uint32, port uint16) (net.Conn, error) {
	conn, err := c.connect(ctx, deviceID, port, c.binary.Load())
	var re *ResultError
	if errors.As(err, &re) && re.Code == ResultBadVersion && !c.binary.Load() {
		c.binary.Store(true)
		return c.connect(ctx, deviceID, port, true)
	}
	return conn, err
}

func (c *Client) connect(ctx context.Context, deviceID uint32, port uint16, binary bool) (net.Conn, error) {
	s, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	tag := c.nextTag()
	if binary {
		fr := &Frame{Version: ProtoBinary, Type: TypeConnect, Tag: tag,
			Payload: ConnectRequest{DeviceID: deviceID, Port: port}.Append(nil)}
		err = s.fr.WriteFrame(fr)
		if err != nil {
			err = s.wrap(MsgConnect, err)
		}
	} else {
		req := c.newRequest(MsgConnect)
		req.DeviceID, req.HasDeviceID = deviceID, true
		req.Port, req.HasPort = port, true
		err = s.sendPlist(req, tag)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	r, err := s.readReply(MsgConnect)
	if err != nil {
		s.close()
		return nil, err
	}
	if r.MessageType != MsgResult {
		s.close()
		return nil, fmt.Errorf("usbmuxd: Connect: unexpected %q reply", r.MessageType)
	}
	// A refusal leaves the daemon's socket usable (M-b4), but like
	// libusbmuxd we use a fresh socket per Connect and close this one.
	if r.Number != 0 {
		s.close()
		return nil, &ResultError{Op: MsgConnect, Code: ResultCode(r.Number)}
	}
	if err := s.release(); err != nil {
		s.conn.Close()
		return nil, err
	}
	return s.conn, nil
}

// ConnectUDID looks the device up by UDID and connects to its port.
func (c *Client) ConnectUDID(ctx context.Context, udid string, port uint16) (net.Conn, error) {
	d, err := c.Device(ctx, udid)
	if err != nil {
		return nil, err
	}
	return c.Connect(ctx, d.ID, port)
}

// ReadBUID returns the daemon's SystemBUID.
func (c *Client) ReadBUID(ctx context.Context) (string, error) {
	r, err := c.roundTrip(ctx, c.newRequest(MsgReadBUID))
	if err != nil {
		return "", err
	}
	if r.BUID == "" {
		return "", errors.New("usbmuxd: ReadBUID: reply has no BUID")
	}
	return r.BUID, nil
}

// ReadPairRecord returns the stored pair record bytes (a plist) for udid.
// A missing record is an error wrapping pairrecord.ErrNotFound.
func (c *Client) ReadPairRecord(ctx context.Context, udid string) ([]byte, error) {
	req := c.newRequest(MsgReadPairRecord)
	req.PairRecordID = udid
	r, err := c.roundTrip(ctx, req)
	// usbmuxd answers a missing record with errno ENOENT (§3.4).
	var re *ResultError
	if errors.As(err, &re) && re.Code == ResultENOENT {
		return nil, fmt.Errorf("%w for %s (%w)", pairrecord.ErrNotFound, udid, err)
	}
	if err != nil {
		return nil, err
	}
	if len(r.PairRecordData) == 0 {
		return nil, fmt.Errorf("%w for %s: empty reply", pairrecord.ErrNotFound, udid)
	}
	return r.PairRecordData, nil
}

// SavePairRecord stores a pair record (binary or XML plist bytes). A
// deviceID > 0 naming the attached device with that UDID makes the daemon
// tell its listeners Paired.
func (c *Client) SavePairRecord(ctx context.Context, udid string, data []byte, deviceID uint32) error {
	req := c.newRequest(MsgSavePairRecord)
	req.PairRecordID, req.PairRecordData = udid, data
	if deviceID > 0 {
		req.DeviceID, req.HasDeviceID = deviceID, true
	}
	_, err := c.roundTrip(ctx, req)
	return err
}

// DeletePairRecord removes the pair record for udid; a missing record is an
// error wrapping pairrecord.ErrNotFound.
func (c *Client) DeletePairRecord(ctx context.Context, udid string) error {
	req := c.newRequest(MsgDeletePairRecord)
	req.PairRecordID = udid
	_, err := c.roundTrip(ctx, req)
	var re *ResultError
	if errors.As(err, &re) && re.Code == ResultENOENT {
		return fmt.Errorf("%w for %s (%w)", pairrecord.ErrNotFound, udid, err)
	}
	return err
}

// ListListeners returns the daemon's listening clients.
func (c *Client) ListListeners(ctx context.Context) ([]ListenerInfo, error) {
	r, err := c.roundTrip(ctx, c.newRequest(MsgListListeners))
	if err != nil {
		return nil, err
	}
	return r.ListenerList, nil
}
