// Package devicelink implements Apple's DeviceLink envelope as used by
// mobilebackup2: length-prefixed property-list arrays whose first element
// names the message (mobilebackup2-and-backup-format.md §1.2–§1.4), the
// version exchange, status responses, and the raw file-transfer frames that
// DownloadFiles/UploadFiles interleave with the plist messages (§3).
//
// The package serves both ends: the host (mobilebackup2) and the fake
// BackupAgent (fakedevice/backupagent).
package devicelink

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// Message names (mobilebackup2-and-backup-format.md §1.3, §1.4, §2.3).
const (
	MsgVersionExchange   = "DLMessageVersionExchange"
	MsgDeviceReady       = "DLMessageDeviceReady"
	MsgProcessMessage    = "DLMessageProcessMessage"
	MsgDisconnect        = "DLMessageDisconnect"
	MsgPing              = "DLMessagePing"
	MsgStatusResponse    = "DLMessageStatusResponse"
	MsgDownloadFiles     = "DLMessageDownloadFiles"
	MsgUploadFiles       = "DLMessageUploadFiles"
	MsgGetFreeDiskSpace  = "DLMessageGetFreeDiskSpace"
	MsgPurgeDiskSpace    = "DLMessagePurgeDiskSpace"
	MsgContentsOfDir     = "DLContentsOfDirectory"
	MsgCreateDirectory   = "DLMessageCreateDirectory"
	MsgMoveFiles         = "DLMessageMoveFiles"
	MsgMoveItems         = "DLMessageMoveItems"
	MsgRemoveFiles       = "DLMessageRemoveFiles"
	MsgRemoveItems       = "DLMessageRemoveItems"
	MsgCopyItem          = "DLMessageCopyItem"
	VersionsOk           = "DLVersionsOk"
	EmptyParameterString = "___EmptyParameterString___"
)

// MinMajorVersion is the oldest DeviceLink major version accepted: 300 up to
// iOS 13, 400 since iOS 14 (§1.3, pitfall 2 of §8).
const MinMajorVersion = 300

// Status codes carried by DLMessageStatusResponse and DLFileErrorCode
// (§2.4, corrections.md B4).
const (
	StatusOK          = 0
	StatusError       = -1
	StatusNotFound    = -6
	StatusExists      = -7
	StatusNotDir      = -8
	StatusIsDir       = -9
	StatusLoop        = -10
	StatusIO          = -11
	StatusMultiStatus = -13
	StatusNoSpace     = -15
)

// ErrProtocol reports a message that does not follow the DeviceLink rules.
var ErrProtocol = errors.New("devicelink: protocol error")

// Conn sends and receives DeviceLink messages on a service connection. Raw
// transfer frames go through the same stream (Stream).
// Reads must come from one goroutine at a time; writes are serialised.
type Conn struct {
	pc *plistconn.Conn
	rw io.ReadWriter
}

// NewConn returns a Conn on rw that writes messages in format f (hosts send
// binary, corrections.md B3).
func NewConn(rw io.ReadWriter, f plistconn.Format) *Conn {
	return &Conn{pc: plistconn.New(rw, f), rw: rw}
}

// Stream returns the underlying byte stream for raw file transfers (§3).
func (c *Conn) Stream() io.ReadWriter { return c.rw }

// Message is one decoded DeviceLink array; Args holds the elements after
// the name.
type Message struct {
	Name string
	Args []any
}

// Arg returns argument i or nil.
func (m *Message) Arg(i int) any {
	if i < 0 || i >= len(m.Args) {
		return nil
	}
	return m.Args[i]
}

// String implements fmt.Stringer.
func (m *Message) String() string { return m.Name }

// Read reads the next message. Names must be strings of at least 9 bytes
// starting with "DL", as libimobiledevice requires (client-needs §4.5).
func (c *Conn) Read() (*Message, error) {
	raw, err := c.pc.ReadRaw()
	if err != nil {
		return nil, fmt.Errorf("devicelink: read: %w", err)
	}
	return Decode(raw)
}

// Decode parses one message body (a plist array).
func Decode(raw []byte) (*Message, error) {
	var arr []any
	if err := plistconn.Unmarshal(raw, &arr); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	if len(arr) == 0 {
		return nil, fmt.Errorf("%w: empty message array", ErrProtocol)
	}
	name, ok := arr[0].(string)
	if !ok || len(name) < 9 || !strings.HasPrefix(name, "DL") || !utf8.ValidString(name) {
		return nil, fmt.Errorf("%w: bad message name %v", ErrProtocol, arr[0])
	}
	return &Message{Name: name, Args: arr[1:]}, nil
}

// Write sends a message with the given name and arguments.
func (c *Conn) Write(name string, args ...any) error {
	arr := make([]any, 0, 1+len(args))
	arr = append(arr, name)
	arr = append(arr, args...)
	if err := c.pc.WriteMessage(arr); err != nil {
		return fmt.Errorf("devicelink: write %s: %w", name, err)
	}
	return nil
}

// VersionExchange runs the host side of the handshake (§1.3): it reads the
// device's version, accepts any major ≥ MinMajorVersion, echoes it and waits
// for DLMessageDeviceReady. It returns the device's major and minor version.
func (c *Conn) VersionExchange() (major, minor int64, err error) {
	m, err := c.Read()
	if err != nil {
		return 0, 0, err
	}
	if m.Name != MsgVersionExchange || len(m.Args) < 2 {
		return 0, 0, fmt.Errorf("%w: expected %s, got %s", ErrProtocol, MsgVersionExchange, m.Name)
	}
	major, ok1 := Int(m.Args[0])
	minor, ok2 := Int(m.Args[1])
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("%w: version exchange without integer versions", ErrProtocol)
	}
	if major < MinMajorVersion {
		return major, minor, fmt.Errorf("%w: unsupported DeviceLink version %d.%d", ErrProtocol, major, minor)
	}
	if err := c.Write(MsgVersionExchange, VersionsOk, major); err != nil {
		return 0, 0, err
	}
	m, err = c.Read()
	if err != nil {
		return 0, 0, err
	}
	if m.Name != MsgDeviceReady {
		return 0, 0, fmt.Errorf("%w: expected %s, got %s", ErrProtocol, MsgDeviceReady, m.Name)
	}
	return major, minor, nil
}

// AcceptVersionExchange runs the device side of the handshake (§1.3, §9).
func (c *Conn) AcceptVersionExchange(major, minor int64) error {
	if err := c.Write(MsgVersionExchange, major, minor); err != nil {
		return err
	}
	m, err := c.Read()
	if err != nil {
		return err
	}
	if m.Name != MsgVersionExchange || len(m.Args) < 2 {
		return fmt.Errorf("%w: expected %s reply, got %s", ErrProtocol, MsgVersionExchange, m.Name)
	}
	if s, _ := m.Args[0].(string); s != VersionsOk {
		return fmt.Errorf("%w: host refused version %d: %v", ErrProtocol, major, m.Args[0])
	}
	return c.Write(MsgDeviceReady)
}

// WriteProcessMessage sends DLMessageProcessMessage with dict (§1.4).
func (c *Conn) WriteProcessMessage(dict any) error {
	return c.Write(MsgProcessMessage, dict)
}

// Disconnect sends DLMessageDisconnect with the placeholder reason (§1.4).
func (c *Conn) Disconnect() error {
	return c.Write(MsgDisconnect, EmptyParameterString)
}

// WriteStatus sends DLMessageStatusResponse(code, desc, extra) (§2.3). An
// empty desc becomes the placeholder string; a nil extra becomes an empty
// dict. The code is written as a signed 8-byte integer (§1.4).
func (c *Conn) WriteStatus(code int64, desc string, extra any) error {
	if desc == "" {
		desc = EmptyParameterString
	}
	if extra == nil {
		extra = map[string]any{}
	}
	return c.Write(MsgStatusResponse, code, desc, extra)
}

// Status is a decoded DLMessageStatusResponse.
type Status struct {
	Code        int32
	Description string
	Extra       any
}

// ParseStatus decodes a status response. Codes arrive as 8-byte signed,
// 16-byte or unsigned (XML) integers and are truncated to int32
// (§1.4, corrections.md B1/B2).
func ParseStatus(m *Message) (*Status, error) {
	if m.Name != MsgStatusResponse || len(m.Args) < 1 {
		return nil, fmt.Errorf("%w: expected %s, got %s", ErrProtocol, MsgStatusResponse, m.Name)
	}
	code, ok := Int(m.Args[0])
	if !ok {
		return nil, fmt.Errorf("%w: status code is %T", ErrProtocol, m.Args[0])
	}
	st := &Status{Code: int32(code)}
	if s, ok := m.Arg(1).(string); ok && s != EmptyParameterString {
		st.Description = s
	}
	st.Extra = m.Arg(2)
	return st, nil
}

// Int converts a plist integer (int64 or uint64 as decoded) or an integral
// real to int64; uint64 values wrap, so 2^64−13 reads as −13.
func Int(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case uint64:
		return int64(x), true
	case int:
		return int64(x), true
	case int32:
		return int64(x), true
	case uint32:
		return int64(x), true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x), true
		}
	case bool:
		return 0, false
	}
	return 0, false
}

// Float converts a plist real or integer to float64.
func Float(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	}
	if i, ok := Int(v); ok {
		return float64(i), true
	}
	return 0, false
}
