package usbmuxd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Binary protocol (version 0) payloads, usb-usbmux-lockdown.md §3.3. All
// integers are little-endian except the CONNECT port, which is big-endian.

// ResultCode is the number carried by RESULT messages (§3.2). The pair-record
// commands put raw errno values in the same field, so 2 means BadDevice for
// Connect but ENOENT for ReadPairRecord.
type ResultCode uint32

const (
	// ResultOK: the command succeeded.
	ResultOK ResultCode = 0
	// ResultBadCommand: unknown or malformed command, or missing PortNumber.
	ResultBadCommand ResultCode = 1
	// ResultBadDevice: Connect to a device ID that is not attached.
	ResultBadDevice ResultCode = 2
	// ResultConnRefused: the device refused the port (it answered the SYN
	// with a reset).
	ResultConnRefused ResultCode = 3
	// ResultBadVersion answers a header version other than 0 or 1. Our
	// server never sends it for a plist request: libusbmuxd would switch to
	// the binary protocol (corrections.md M-b1).
	ResultBadVersion ResultCode = 6

	// ResultENOENT (errno 2): no pair record for the PairRecordID.
	ResultENOENT ResultCode = 2
	// ResultEIO (errno 5): the record store failed.
	ResultEIO ResultCode = 5
	// ResultEINVAL (errno 22): missing or invalid PairRecordID or data.
	ResultEINVAL ResultCode = 22
)

// String names the code as usbmuxd does for socket commands.
func (c ResultCode) String() string {
	switch c {
	case ResultOK:
		return "OK"
	case ResultBadCommand:
		return "BADCOMMAND"
	case ResultBadDevice:
		return "BADDEV"
	case ResultConnRefused:
		return "CONNREFUSED"
	case 4:
		return "NOSUCHSERVICE"
	case ResultBadVersion:
		return "BADVERSION"
	}
	return fmt.Sprintf("Result(%d)", uint32(c))
}

// Sentinels a ResultError matches with errors.Is, for callers that branch.
var (
	// ErrBadCommand matches Result 1.
	ErrBadCommand = errors.New("usbmuxd: bad command")
	// ErrBadDevice matches Result 2 of a Connect.
	ErrBadDevice = errors.New("usbmuxd: bad device")
	// ErrConnRefused matches Result 3.
	ErrConnRefused = errors.New("usbmuxd: connection refused")
	// ErrBadVersion matches Result 6.
	ErrBadVersion = errors.New("usbmuxd: protocol version not supported")
)

// ResultError is a non-zero Result from the daemon.
type ResultError struct {
	Op   string // request that failed, e.g. "Connect"
	Code ResultCode
}

// Error describes the failed request.
func (e *ResultError) Error() string {
	return fmt.Sprintf("usbmuxd: %s: result %d (%v)", e.Op, uint32(e.Code), e.Code)
}

// Is matches the sentinel for the code.
func (e *ResultError) Is(target error) bool {
	switch target {
	case ErrBadCommand:
		return e.Code == ResultBadCommand
	case ErrBadDevice:
		return e.Code == ResultBadDevice
	case ErrConnRefused:
		return e.Code == ResultConnRefused
	case ErrBadVersion:
		return e.Code == ResultBadVersion
	}
	return false
}

// ErrShortPayload reports a binary payload shorter than its message needs.
var ErrShortPayload = errors.New("usbmuxd: payload too short")

// ParseResult decodes a binary RESULT payload (u32 LE).
func ParseResult(p []byte) (ResultCode, error) {
	if len(p) < 4 {
		return 0, fmt.Errorf("%w: RESULT has %d bytes", ErrShortPayload, len(p))
	}
	return ResultCode(binary.LittleEndian.Uint32(p)), nil
}

// AppendResult appends a binary RESULT payload.
func AppendResult(b []byte, c ResultCode) []byte {
	return binary.LittleEndian.AppendUint32(b, uint32(c))
}

// ConnectRequest is the binary CONNECT payload: device id (u32 LE), port
// (u16 big-endian on the wire, host order here), 2 reserved bytes.
type ConnectRequest struct {
	DeviceID uint32
	Port     uint16
}

// connectPayloadSize is the CONNECT payload after the header (24-byte message).
const connectPayloadSize = 8

// ParseConnect decodes a binary CONNECT payload.
func ParseConnect(p []byte) (ConnectRequest, error) {
	if len(p) < connectPayloadSize {
		return ConnectRequest{}, fmt.Errorf("%w: CONNECT has %d bytes", ErrShortPayload, len(p))
	}
	return ConnectRequest{
		DeviceID: binary.LittleEndian.Uint32(p),
		Port:     binary.BigEndian.Uint16(p[4:]),
	}, nil
}

// Append appends the encoded payload.
func (c ConnectRequest) Append(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, c.DeviceID)
	b = binary.BigEndian.AppendUint16(b, c.Port)
	return append(b, 0, 0)
}

// DeviceRecord is the 268-byte binary DEVICE_ADD payload: device id u32,
// product id u16, serial number char[256] NUL-padded, 2 bytes padding,
// location u32, all little-endian.
type DeviceRecord struct {
	DeviceID     uint32
	ProductID    uint16
	SerialNumber string
	Location     uint32
}

// DeviceRecordSize is the size of an encoded DeviceRecord.
const DeviceRecordSize = 268

const serialFieldSize = 256

// ParseDeviceRecord decodes a DEVICE_ADD payload. The serial number ends at
// the first NUL and has at most 255 bytes (usbmuxd always NUL-terminates
// the field).
func ParseDeviceRecord(p []byte) (DeviceRecord, error) {
	if len(p) < DeviceRecordSize {
		return DeviceRecord{}, fmt.Errorf("%w: DEVICE_ADD has %d bytes", ErrShortPayload, len(p))
	}
	serial := p[6 : 6+serialFieldSize-1]
	if i := bytes.IndexByte(serial, 0); i >= 0 {
		serial = serial[:i]
	}
	return DeviceRecord{
		DeviceID:     binary.LittleEndian.Uint32(p),
		ProductID:    binary.LittleEndian.Uint16(p[4:]),
		SerialNumber: string(serial),
		Location:     binary.LittleEndian.Uint32(p[6+serialFieldSize+2:]),
	}, nil
}

// Append appends the encoded record. A serial number is cut to 255 bytes
// (the field always ends in NUL, as usbmuxd writes it) and at any NUL.
func (d DeviceRecord) Append(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, d.DeviceID)
	b = binary.LittleEndian.AppendUint16(b, d.ProductID)
	var serial [serialFieldSize]byte
	s := d.SerialNumber
	if i := indexNUL(s); i >= 0 {
		s = s[:i]
	}
	copy(serial[:serialFieldSize-1], s)
	b = append(b, serial[:]...)
	b = append(b, 0, 0)
	return binary.LittleEndian.AppendUint32(b, d.Location)
}

func indexNUL(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return i
		}
	}
	return -1
}

// ParseDeviceID decodes a DEVICE_REMOVE or DEVICE_PAIRED payload (u32 LE).
func ParseDeviceID(p []byte) (uint32, error) {
	if len(p) < 4 {
		return 0, fmt.Errorf("%w: device id has %d bytes", ErrShortPayload, len(p))
	}
	return binary.LittleEndian.Uint32(p), nil
}

// AppendDeviceID appends a DEVICE_REMOVE or DEVICE_PAIRED payload.
func AppendDeviceID(b []byte, id uint32) []byte {
	return binary.LittleEndian.AppendUint32(b, id)
}

// SwapPort converts between a port number and the PortNumber integer of a
// plist Connect, which holds htons(port) read as a little-endian number
// (§3.4: 62078 ↔ 32498). The conversion is its own inverse.
func SwapPort(p uint16) uint16 {
	return p<<8 | p>>8
}
