package usbemu

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The bus protocol between a phone (Go) and the USB bus handler (usbbus.py)
// over one UNIX stream connection. Every frame is
//
//	length u32 (big-endian, counts type + payload) | type u8 | payload
//
// The phone sends FrameHello first; after that the bus sends FrameOut and
// FrameEvent, the phone sends FrameIn. Either side closing the connection
// unplugs the phone.

// FrameType is the type byte of a bus frame.
type FrameType uint8

// Frame types of the bus protocol.
const (
	// FrameHello (phone → bus) carries the JSON Hello that describes the
	// device; the bus plugs it in when it arrives.
	FrameHello FrameType = 1
	// FrameIn (phone → bus) is one device→host transfer on the mux IN
	// endpoint. The bus ends it with a short packet or a ZLP.
	FrameIn FrameType = 2
	// FrameOut (bus → phone) is the data of one bulk-OUT URB the host
	// submitted on the mux OUT endpoint; empty for a ZLP.
	FrameOut FrameType = 3
	// FrameEvent (bus → phone) is a JSON Event: something the host did
	// that the phone may want to know (configuration, claim, vendor request).
	FrameEvent FrameType = 4
)

// String names the frame type.
func (t FrameType) String() string {
	switch t {
	case FrameHello:
		return "HELLO"
	case FrameIn:
		return "IN"
	case FrameOut:
		return "OUT"
	case FrameEvent:
		return "EVENT"
	}
	return "FrameType(" + strconv.Itoa(int(t)) + ")"
}

// MaxFrame is the largest frame body (type + payload) either side accepts;
// larger than any URB a libusb host submits on the mux endpoints.
const MaxFrame = 1 << 20

// ErrFrameTooLarge is returned for a frame whose length exceeds MaxFrame.
var ErrFrameTooLarge = errors.New("usbemu: bus frame too large")

// ErrFrameEmpty is returned for a frame whose length is 0 (no type byte).
var ErrFrameEmpty = errors.New("usbemu: empty bus frame")

// Frame is one bus frame.
type Frame struct {
	Type    FrameType
	Payload []byte
}

// ReadFrame reads one frame from r. It checks the length against MaxFrame
// before allocating.
func ReadFrame(r io.Reader) (Frame, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n == 0 {
		return Frame{}, ErrFrameEmpty
	}
	if n > MaxFrame {
		return Frame{}, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	if _, err := io.ReadFull(r, hdr[4:5]); err != nil {
		return Frame{}, unexpected(err)
	}
	p := make([]byte, n-1)
	if _, err := io.ReadFull(r, p); err != nil {
		return Frame{}, unexpected(err)
	}
	return Frame{Type: FrameType(hdr[4]), Payload: p}, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// AppendFrame appends the encoding of f to b.
func AppendFrame(b []byte, f Frame) ([]byte, error) {
	if len(f.Payload)+1 > MaxFrame {
		return b, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(f.Payload)+1)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(f.Payload)+1))
	b = append(b, byte(f.Type))
	return append(b, f.Payload...), nil
}

// Hello is the JSON payload of FrameHello: the device as the bus must
// present it. Field names are those usbbus.py reads.
type Hello struct {
	// Descriptors is the hex of the device descriptor followed by all
	// configuration descriptors (Identity.Descriptors).
	Descriptors string `json:"descriptors"`
	// Strings are the string descriptors' texts by decimal index.
	Strings map[string]string `json:"strings"`
	// MuxOut and MuxIn are the endpoint addresses carried by the bus.
	MuxOut int `json:"mux_out"`
	MuxIn  int `json:"mux_in"`
	// MaxPacket is wMaxPacketSize of the mux endpoints (ZLP rule).
	MaxPacket int `json:"max_packet"`
	// InitialConfig is bConfigurationValue at plug time.
	InitialConfig int `json:"initial_config"`
	// Mode is the hex of the 4-byte GET_MODE answer.
	Mode string `json:"mode"`
}

// NewHello builds the Hello for id.
func NewHello(id Identity) (Hello, error) {
	strs, err := id.Strings()
	if err != nil {
		return Hello{}, err
	}
	id = id.withDefaults()
	h := Hello{
		Descriptors:   hex.EncodeToString(id.Descriptors()),
		Strings:       make(map[string]string, len(strs)),
		MuxOut:        MuxOut,
		MuxIn:         MuxIn,
		MaxPacket:     MaxPacket,
		InitialConfig: id.InitialConfig,
		Mode:          hex.EncodeToString(id.Mode[:]),
	}
	for i, s := range strs {
		h.Strings[strconv.Itoa(i)] = s
	}
	return h, nil
}

// EventKind names what the host did.
type EventKind string

// Event kinds the bus reports.
const (
	// EventConfig: the host set a configuration (Value).
	EventConfig EventKind = "set_configuration"
	// EventClaim / EventRelease: the host claimed or released interface Value.
	EventClaim   EventKind = "claim_interface"
	EventRelease EventKind = "release_interface"
	// EventGetMode / EventSetMode: vendor requests 0x45 / 0x52 (§1.3);
	// Value is wIndex (the requested mode) for SET_MODE.
	EventGetMode EventKind = "get_mode"
	EventSetMode EventKind = "set_mode"
	// EventReset: the host reset the device.
	EventReset EventKind = "reset"
	// EventUnplug: the bus unplugged the device (its own decision, e.g. the
	// test harness); the connection closes after it.
	EventUnplug EventKind = "unplug"
)

// Event is the JSON payload of FrameEvent.
type Event struct {
	Kind  EventKind `json:"kind"`
	Value int       `json:"value"`
}

// ParseEvent decodes a FrameEvent payload.
func ParseEvent(p []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(p, &e); err != nil {
		return Event{}, fmt.Errorf("usbemu: bad event frame: %w", err)
	}
	return e, nil
}
