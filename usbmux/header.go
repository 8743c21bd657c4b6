// Package usbmux speaks Apple's USB multiplexing protocol (the protocol usbmuxd runs on the
// bulk endpoints of an iPhone) from the host side, in layers: Link (bulk transfers) → Framer
// (mux packets) → Session (connection table, ACK/RST writer) → Conn (TCP emulation, a net.Conn).
// Mux adds the host's VERSION handshake and Dial. The codec types are exported so the fake
// device (fakedevice/devmux) is built from the same code.
//
// Wire facts: usb-usbmux-lockdown.md §1–2 and corrections.md M-a/M-b (which win).
package usbmux

import (
	"encoding/binary"
	"fmt"
)

// Protocol is the 32-bit protocol field of a mux packet header (usb-usbmux-lockdown.md §2.1).
type Protocol uint32

// Mux protocol numbers (usb-usbmux-lockdown.md §2.1).
const (
	ProtoVersion Protocol = 0 // VERSION: major, minor, padding (u32 BE each)
	ProtoControl Protocol = 1 // CONTROL: device→host text message
	ProtoSetup   Protocol = 2 // SETUP: host→device, one byte 0x07
	ProtoTCP     Protocol = 6 // TCP: 20-byte TCP header + data
)

// String names the protocol; unknown numbers print as "proto(N)".
func (p Protocol) String() string {
	switch p {
	case ProtoVersion:
		return "VERSION"
	case ProtoControl:
		return "CONTROL"
	case ProtoSetup:
		return "SETUP"
	case ProtoTCP:
		return "TCP"
	}
	return fmt.Sprintf("proto(%d)", uint32(p))
}

// Sizes and limits of the mux wire format (usb-usbmux-lockdown.md §2.1, §2.6).
const (
	HeaderV1Size    = 8          // protocol, length
	HeaderV2Size    = 16         // protocol, length, magic, tx_seq, rx_seq
	Magic           = 0xFEEDFACE // v2 magic; never validated by usbmuxd (corrections.md M-a 2)
	MaxHostPacket   = 49152      // USB_MTU: largest host→device mux packet
	MaxDevicePacket = 65536      // DEV_MRU: largest device→host mux packet
	TCPHeaderSize   = 20         // BSD TCP header without options
	// MaxHostPayload is the largest TCP payload of a host→device packet (49116, §2.6 max_payload).
	MaxHostPayload = MaxHostPacket - HeaderV2Size - TCPHeaderSize
	// SetupByte is the one-byte payload of SETUP; its meaning is undocumented (§2.2).
	SetupByte = 0x07
)

// Header is a mux packet header. Version 1 headers carry only Protocol and Length; version 2
// headers add Magic, TxSeq and RxSeq (usb-usbmux-lockdown.md §2.1).
type Header struct {
	Protocol Protocol
	Length   uint32 // whole packet length, header included
	Magic    uint32 // v2 only
	TxSeq    uint16 // v2 only
	RxSeq    uint16 // v2 only
}

// HeaderSize returns the header length for mux version v (1 → 8 bytes, otherwise 16).
func HeaderSize(v int) int {
	if v == 1 {
		return HeaderV1Size
	}
	return HeaderV2Size
}

// AppendHeader appends the wire form of h for mux version v to b.
func AppendHeader(b []byte, h Header, v int) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(h.Protocol))
	b = binary.BigEndian.AppendUint32(b, h.Length)
	if v == 1 {
		return b
	}
	b = binary.BigEndian.AppendUint32(b, h.Magic)
	b = binary.BigEndian.AppendUint16(b, h.TxSeq)
	return binary.BigEndian.AppendUint16(b, h.RxSeq)
}

// ParseHeader decodes a header of mux version v from the start of b. It checks only that b is
// long enough and that Length covers at least the header; size limits are the Framer's job.
func ParseHeader(b []byte, v int) (Header, error) {
	n := HeaderSize(v)
	if len(b) < n {
		return Header{}, fmt.Errorf("usbmux: header needs %d bytes, have %d: %w", n, len(b), ErrMalformed)
	}
	h := Header{
		Protocol: Protocol(binary.BigEndian.Uint32(b[0:4])),
		Length:   binary.BigEndian.Uint32(b[4:8]),
	}
	if v != 1 {
		h.Magic = binary.BigEndian.Uint32(b[8:12])
		h.TxSeq = binary.BigEndian.Uint16(b[12:14])
		h.RxSeq = binary.BigEndian.Uint16(b[14:16])
	}
	if h.Length < uint32(n) {
		return h, fmt.Errorf("usbmux: %s packet length %d shorter than its %d-byte header: %w",
			h.Protocol, h.Length, n, ErrMalformed)
	}
	return h, nil
}

// VersionPayload is the 12-byte body of a VERSION packet (usb-usbmux-lockdown.md §2.2).
type VersionPayload struct {
	Major, Minor, Padding uint32
}

// VersionPayloadSize is the length of an encoded VersionPayload.
const VersionPayloadSize = 12

// Append appends the wire form of v to b.
func (v VersionPayload) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, v.Major)
	b = binary.BigEndian.AppendUint32(b, v.Minor)
	return binary.BigEndian.AppendUint32(b, v.Padding)
}

// ParseVersion decodes a VERSION payload. Extra trailing bytes are ignored.
func ParseVersion(b []byte) (VersionPayload, error) {
	if len(b) < VersionPayloadSize {
		return VersionPayload{}, fmt.Errorf("usbmux: VERSION payload has %d bytes, want %d: %w",
			len(b), VersionPayloadSize, ErrMalformed)
	}
	return VersionPayload{
		Major:   binary.BigEndian.Uint32(b[0:4]),
		Minor:   binary.BigEndian.Uint32(b[4:8]),
		Padding: binary.BigEndian.Uint32(b[8:12]),
	}, nil
}

// ControlType is byte 0 of a CONTROL payload (usb-usbmux-lockdown.md §2.4).
type ControlType uint8

// CONTROL message types. usbmuxd 1.1.1 knows only 3 and 7 (corrections.md V5).
const (
	ControlTypeError   ControlType = 3
	ControlTypeWarning ControlType = 5
	ControlTypeInfo    ControlType = 7
)

// String names the control type.
func (t ControlType) String() string {
	switch t {
	case ControlTypeError:
		return "error"
	case ControlTypeWarning:
		return "warning"
	case ControlTypeInfo:
		return "info"
	}
	return fmt.Sprintf("control(%d)", uint8(t))
}

// ControlMessage is a CONTROL packet from the device: a type and free text.
type ControlMessage struct {
	Type ControlType
	Text string
}

// String formats the message for logs.
func (m ControlMessage) String() string { return m.Type.String() + ": " + m.Text }

// Append appends the wire form of m to b.
func (m ControlMessage) Append(b []byte) []byte {
	return append(append(b, byte(m.Type)), m.Text...)
}

// ParseControl decodes a CONTROL payload. The text is not NUL-terminated and may end in a
// newline, which is stripped (§2.4). An empty payload is malformed.
func ParseControl(b []byte) (ControlMessage, error) {
	if len(b) == 0 {
		return ControlMessage{}, fmt.Errorf("usbmux: empty CONTROL payload: %w", ErrMalformed)
	}
	text := b[1:]
	for len(text) > 0 && (text[len(text)-1] == '\n' || text[len(text)-1] == 0) {
		text = text[:len(text)-1]
	}
	return ControlMessage{Type: ControlType(b[0]), Text: string(text)}, nil
}
