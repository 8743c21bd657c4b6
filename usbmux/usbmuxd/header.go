// Package usbmuxd speaks the usbmuxd local-socket protocol: the socket that
// libimobiledevice, pymobiledevice3, go-ios and Xcode use to find phones and
// open connections to their ports.
//
// It has three parts:
//   - a codec for the 16-byte little-endian header and both message
//     families, binary (protocol version 0) and plist (version 1)
//     (usb-usbmux-lockdown.md §3.2–§3.4);
//   - a Server that serves that protocol for any Source of devices, so
//     ibackup can stand in for usbmuxd; pair records live in a
//     pairrecord.Dir (§4);
//   - a Client for an existing daemon (usbmuxd, macOS, or our own Server).
//
// The package never reads the environment: callers pass socket addresses
// (the CLI resolves USBMUXD_SOCKET_ADDRESS).
package usbmuxd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// HeaderSize is the size of the header in front of every message (§3.2).
const HeaderSize = 16

// MaxRequestSize is the largest message usbmuxd accepts from a client;
// longer (and shorter-than-header) messages make it close the socket
// (§3.2, usbmuxd client.c process_recv).
const MaxRequestSize = 65536

// DefaultMaxReplySize bounds messages our Client accepts from a daemon. A
// device list of many phones can exceed the 64 KiB request limit.
const DefaultMaxReplySize = 4 << 20

// ProtoVersion is the header's version field: which message family a
// message belongs to (§3.2).
type ProtoVersion uint32

const (
	// ProtoBinary is the original fixed-struct protocol (§3.3).
	ProtoBinary ProtoVersion = 0
	// ProtoPlist is the property-list protocol (§3.4).
	ProtoPlist ProtoVersion = 1
)

// String names the protocol version.
func (v ProtoVersion) String() string {
	switch v {
	case ProtoBinary:
		return "binary"
	case ProtoPlist:
		return "plist"
	}
	return fmt.Sprintf("ProtoVersion(%d)", uint32(v))
}

// MessageType is the header's message field (§3.2).
type MessageType uint32

// Message types. Plist-protocol messages all use TypePlist; the plist's
// MessageType key says what they are.
const (
	// TypeResult answers a binary command (payload: u32 code).
	TypeResult MessageType = 1
	// TypeConnect asks for a stream to a device port (binary).
	TypeConnect MessageType = 2
	// TypeListen subscribes to device events (binary).
	TypeListen MessageType = 3
	// TypeDeviceAdd announces a device (binary, DeviceRecord payload).
	TypeDeviceAdd MessageType = 4
	// TypeDeviceRemove announces a detach (binary, u32 device id).
	TypeDeviceRemove MessageType = 5
	// TypeDevicePaired announces a saved pair record (binary, u32 device id).
	TypeDevicePaired MessageType = 6
	// TypePlist carries a plist-protocol message.
	TypePlist MessageType = 8
)

// String names the message type as usbmuxd-proto.h does.
func (t MessageType) String() string {
	switch t {
	case TypeResult:
		return "RESULT"
	case TypeConnect:
		return "CONNECT"
	case TypeListen:
		return "LISTEN"
	case TypeDeviceAdd:
		return "DEVICE_ADD"
	case TypeDeviceRemove:
		return "DEVICE_REMOVE"
	case TypeDevicePaired:
		return "DEVICE_PAIRED"
	case TypePlist:
		return "PLIST"
	}
	return fmt.Sprintf("MessageType(%d)", uint32(t))
}

// Header is the 16-byte little-endian message header (§3.2). Length counts
// the header itself.
type Header struct {
	Length  uint32
	Version ProtoVersion
	Type    MessageType
	Tag     uint32
}

// Frame is one message: its header fields and the payload after the header.
type Frame struct {
	Version ProtoVersion
	Type    MessageType
	// Tag is echoed in replies; unsolicited notifications carry 0.
	Tag     uint32
	Payload []byte
}

// ErrFrameSize reports a header length below HeaderSize or above the
// framer's limit. The stream cannot be resynchronised; close it.
var ErrFrameSize = errors.New("usbmuxd: bad message length")

// Framer reads and writes frames on a byte stream. It never reads past the
// end of the frame it returns, so after a successful Connect the same
// stream carries raw device data (§3.6). ReadFrame must be called from one
// goroutine at a time; WriteFrame is safe for concurrent use and issues one
// Write per frame, as libusbmuxd's single 16-byte recv requires
// (corrections.md M-b2).
type Framer struct {
	r io.Reader
	w io.Writer
	// MaxSize bounds the length field of incoming frames (header included);
	// MaxRequestSize when 0.
	MaxSize int

	wmu sync.Mutex
}

// NewFramer returns a Framer writing to w and reading from r.
func NewFramer(w io.Writer, r io.Reader) *Framer {
	return &Framer{r: r, w: w}
}

func (f *Framer) maxSize() int {
	if f.MaxSize > 0 {
		return f.MaxSize
	}
	return MaxRequestSize
}

// ReadFrame reads one frame. io.EOF before the first header byte is
// returned as is (a clean close).
func (f *Framer) ReadFrame() (*Frame, error) {
	var hb [HeaderSize]byte
	if _, err := io.ReadFull(f.r, hb[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("usbmuxd: reading header: %w", err)
		}
		return nil, err
	}
	h := ParseHeader(hb[:])
	if h.Length < HeaderSize || int64(h.Length) > int64(f.maxSize()) {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrFrameSize, h.Length, f.maxSize())
	}
	fr := &Frame{Version: h.Version, Type: h.Type, Tag: h.Tag}
	if n := h.Length - HeaderSize; n > 0 {
		fr.Payload = make([]byte, n) // bounded by maxSize above
		if _, err := io.ReadFull(f.r, fr.Payload); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("usbmuxd: reading %d-byte %v payload: %w", n, h.Type, err)
		}
	}
	return fr, nil
}

// WriteFrame writes fr with its header in a single Write.
func (f *Framer) WriteFrame(fr *Frame) error {
	b, err := AppendFrame(nil, fr)
	if err != nil {
		return err
	}
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if _, err := f.w.Write(b); err != nil {
		return fmt.Errorf("usbmuxd: write %v: %w", fr.Type, err)
	}
	return nil
}

// ParseHeader decodes the first HeaderSize bytes of b; b must be at least
// that long.
func ParseHeader(b []byte) Header {
	_ = b[HeaderSize-1]
	return Header{
		Length:  binary.LittleEndian.Uint32(b[0:]),
		Version: ProtoVersion(binary.LittleEndian.Uint32(b[4:])),
		Type:    MessageType(binary.LittleEndian.Uint32(b[8:])),
		Tag:     binary.LittleEndian.Uint32(b[12:]),
	}
}

// AppendFrame appends the encoded frame (header and payload) to b.
func AppendFrame(b []byte, fr *Frame) ([]byte, error) {
	n := HeaderSize + len(fr.Payload)
	if uint64(n) > uint64(^uint32(0)) {
		return nil, fmt.Errorf("%w: %d-byte payload", ErrFrameSize, len(fr.Payload))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	b = binary.LittleEndian.AppendUint32(b, uint32(fr.Version))
	b = binary.LittleEndian.AppendUint32(b, uint32(fr.Type))
	b = binary.LittleEndian.AppendUint32(b, fr.Tag)
	return append(b, fr.Payload...), nil
}
