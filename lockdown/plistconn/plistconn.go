// Package plistconn frames property lists on a byte stream the way lockdownd
// and the services it starts (notification_proxy, installation_proxy,
// mobilebackup2's DeviceLink) do: a 4-byte big-endian length, then that many
// bytes of property list, XML or binary.
//
// Source: usb-usbmux-lockdown.md §5.1 and mobilebackup2-and-backup-format.md
// §1.2 (libimobiledevice property_list_service.c, pymobiledevice3
// service_connection.py).
//
// A Conn never reads ahead of the message it returns, so the same stream can
// carry raw, unframed data between messages (DeviceLink file transfers do).
package plistconn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"howett.net/plist"
)

// Format selects how outgoing messages are encoded.
type Format int

const (
	// XML is what hosts send to lockdownd and to notification_proxy.
	XML Format = iota
	// Binary (bplist00) is what hosts send to mobilebackup2.
	Binary
)

// String returns the name of the format.
func (f Format) String() string {
	switch f {
	case XML:
		return "xml"
	case Binary:
		return "binary"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// DefaultMaxSize bounds a single message unless Conn.MaxSize says otherwise.
// DeviceLink directory listings and file lists of large phones are the
// biggest messages seen; 64 MiB leaves ample room while bounding memory.
const DefaultMaxSize = 64 << 20

// ErrTooLarge reports a length prefix above the Conn's limit. The stream is
// out of sync afterwards and must be closed.
var ErrTooLarge = errors.New("plistconn: message too large")

// Conn reads and writes length-prefixed property lists on rw.
// ReadMessage may be called from one goroutine at a time; WriteMessage is
// safe for concurrent use and issues exactly one Write per message.
type Conn struct {
	rw io.ReadWriter
	// Format is the encoding of outgoing messages.
	Format Format
	// MaxSize bounds incoming messages (DefaultMaxSize when 0).
	MaxSize int

	wmu sync.Mutex
}

// New returns a Conn on rw that writes f-encoded messages.
func New(rw io.ReadWriter, f Format) *Conn {
	return &Conn{rw: rw, Format: f}
}

// ReadWriter returns the underlying stream, for protocols that interleave
// raw data with messages.
func (c *Conn) ReadWriter() io.ReadWriter { return c.rw }

func (c *Conn) maxSize() int {
	if c.MaxSize > 0 {
		return c.MaxSize
	}
	return DefaultMaxSize
}

// ReadRaw reads one message and returns its plist bytes undecoded.
func (c *Conn) ReadRaw() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c.rw, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("plistconn: reading length: %w", err)
		}
		return nil, err // io.EOF between messages is a clean close
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if int64(n) > int64(c.maxSize()) {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, n, c.maxSize())
	}
	// Grow with the data actually received, so a lying length prefix cannot
	// make us allocate more than the peer sends.
	var buf bytes.Buffer
	if n < 64<<10 {
		buf.Grow(int(n))
	}
	if _, err := io.CopyN(&buf, c.rw, int64(n)); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("plistconn: reading %d-byte message: %w", n, err)
	}
	return buf.Bytes(), nil
}

// ReadMessage reads one message and decodes it into v (a pointer to a
// tagged struct, a map, a slice or an interface value).
func (c *Conn) ReadMessage(v any) error {
	b, err := c.ReadRaw()
	if err != nil {
		return err
	}
	return Unmarshal(b, v)
}

// WriteMessage encodes v in c.Format and writes it with its length prefix in
// a single Write.
func (c *Conn) WriteMessage(v any) error {
	body, err := Marshal(v, c.Format)
	if err != nil {
		return err
	}
	return c.WriteRaw(body)
}

// WriteRaw writes already-encoded plist bytes with their length prefix.
func (c *Conn) WriteRaw(body []byte) error {
	if len(body) > c.maxSize() {
		return fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(body), c.maxSize())
	}
	msg := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(msg, uint32(len(body)))
	copy(msg[4:], body)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.rw.Write(msg); err != nil {
		return fmt.Errorf("plistconn: write: %w", err)
	}
	return nil
}

// Marshal encodes v as an XML (tab-indented, as Apple writes it) or binary
// property list.
func Marshal(v any, f Format) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	switch f {
	case Binary:
		b, err = plist.Marshal(v, plist.BinaryFormat)
	default:
		b, err = plist.MarshalIndent(v, plist.XMLFormat, "\t")
	}
	if err != nil {
		return nil, fmt.Errorf("plistconn: encode: %w", err)
	}
	return b, nil
}

// Unmarshal decodes an XML or binary property list into v. XML from devices
// may carry raw control characters (iOS 4.3 and later); like
// libimobiledevice, bytes below 0x20 other than TAB, LF and CR are read as
// spaces.
func Unmarshal(b []byte, v any) (err error) {
	if !bytes.HasPrefix(b, []byte("bplist")) {
		b = sanitizeXML(b)
	}
	defer func() {
		// howett.net/plist reports some malformed input by panicking inside
		// its decoder; peer input must never crash us.
		if r := recover(); r != nil {
			err = fmt.Errorf("plistconn: malformed property list: %v", r)
		}
	}()
	if _, err := plist.Unmarshal(b, v); err != nil {
		return fmt.Errorf("plistconn: decode: %w", err)
	}
	return nil
}

func sanitizeXML(b []byte) []byte {
	var out []byte
	for i, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			if out == nil {
				out = append([]byte(nil), b...)
			}
			out[i] = ' '
		}
	}
	if out == nil {
		return b
	}
	return out
}
