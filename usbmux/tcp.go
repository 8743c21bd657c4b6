package usbmux

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// TCPFlags is the flags byte of the emulated TCP header (usb-usbmux-lockdown.md §2.5).
type TCPFlags uint8

// TCP flag bits. The mux uses only SYN, ACK and RST; an established connection must carry
// exactly ACK (corrections.md M-a 6).
const (
	FlagFIN TCPFlags = 0x01
	FlagSYN TCPFlags = 0x02
	FlagRST TCPFlags = 0x04
	FlagPSH TCPFlags = 0x08
	FlagACK TCPFlags = 0x10
)

// String prints the set flags joined by "|", e.g. "SYN|ACK"; 0 prints as "none".
func (f TCPFlags) String() string {
	if f == 0 {
		return "none"
	}
	names := []struct {
		bit  TCPFlags
		name string
	}{{FlagFIN, "FIN"}, {FlagSYN, "SYN"}, {FlagRST, "RST"}, {FlagPSH, "PSH"}, {FlagACK, "ACK"}}
	var parts []string
	rest := f
	for _, n := range names {
		if f&n.bit != 0 {
			parts = append(parts, n.name)
			rest &^= n.bit
		}
	}
	if rest != 0 {
		parts = append(parts, fmt.Sprintf("0x%02x", uint8(rest)))
	}
	return strings.Join(parts, "|")
}

// TCPHeader is the 20-byte header of a mux TCP packet. Checksum and urgent pointer are always 0
// and the data offset is always 5 words (usb-usbmux-lockdown.md §2.5). Window is in units of
// 256 bytes.
type TCPHeader struct {
	SrcPort, DstPort uint16
	Seq, Ack         Seq
	Flags            TCPFlags
	Window           uint16
}

// String formats the header for logs and test expectations.
func (h TCPHeader) String() string {
	return fmt.Sprintf("%d->%d %s seq=%d ack=%d win=%d", h.SrcPort, h.DstPort, h.Flags,
		uint32(h.Seq), uint32(h.Ack), h.Window)
}

// Append appends the 20-byte wire form of h to b.
func (h TCPHeader) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, h.SrcPort)
	b = binary.BigEndian.AppendUint16(b, h.DstPort)
	b = binary.BigEndian.AppendUint32(b, uint32(h.Seq))
	b = binary.BigEndian.AppendUint32(b, uint32(h.Ack))
	b = append(b, 0x50, byte(h.Flags))
	b = binary.BigEndian.AppendUint16(b, h.Window)
	return append(b, 0, 0, 0, 0) // checksum, urgent pointer
}

// ParseTCP splits a TCP packet body into header and payload. The data-offset field is ignored
// like usbmuxd does: the payload always starts at byte 20. The payload aliases b.
func ParseTCP(b []byte) (TCPHeader, []byte, error) {
	if len(b) < TCPHeaderSize {
		return TCPHeader{}, nil, fmt.Errorf("usbmux: TCP packet has %d bytes, header needs %d: %w",
			len(b), TCPHeaderSize, ErrMalformed)
	}
	h := TCPHeader{
		SrcPort: binary.BigEndian.Uint16(b[0:2]),
		DstPort: binary.BigEndian.Uint16(b[2:4]),
		Seq:     Seq(binary.BigEndian.Uint32(b[4:8])),
		Ack:     Seq(binary.BigEndian.Uint32(b[8:12])),
		Flags:   TCPFlags(b[13]),
		Window:  binary.BigEndian.Uint16(b[14:16]),
	}
	return h, b[TCPHeaderSize:], nil
}
