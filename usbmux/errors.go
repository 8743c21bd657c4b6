package usbmux

import (
	"errors"
	"fmt"
	"os"
)

// Sentinel errors callers branch on with errors.Is. Link-fatal errors (ErrMalformed,
// ErrTooLarge, ErrLinkClosed, ErrVersion) end the whole mux; per-connection errors
// (ErrRefused, ErrReset, ErrOverflow) end one connection (STYLE.md 10).
var (
	// ErrMalformed: a packet from the peer does not parse.
	ErrMalformed = errors.New("usbmux: malformed packet")
	// ErrTooLarge: a packet exceeds the size limit of its direction (§2.6).
	ErrTooLarge = errors.New("usbmux: packet too large")
	// ErrLinkClosed: the link was closed locally or died (unplug); wrapped around the cause.
	ErrLinkClosed = errors.New("usbmux: link closed")
	// ErrVersion: the device answered the VERSION handshake with a major other than 1 or 2.
	ErrVersion = errors.New("usbmux: unsupported mux version")
	// ErrRefused: the device answered a SYN with something other than SYN|ACK (normally RST).
	ErrRefused = errors.New("usbmux: connection refused")
	// ErrReset: the peer reset an established connection, or sent flags other than ACK.
	ErrReset = errors.New("usbmux: connection reset")
	// ErrOverflow: the peer sent more than the receive buffer holds (it ignored the window).
	ErrOverflow = errors.New("usbmux: receive buffer overflow")
	// ErrSequence: a data packet left a gap in the byte stream (a packet was lost).
	ErrSequence = errors.New("usbmux: sequence gap")
	// ErrPorts: all 65535 host ports are in use.
	ErrPorts = errors.New("usbmux: no free host port")
	// ErrDeviceControl: the device sent a CONTROL error during the handshake.
	ErrDeviceControl = errors.New("usbmux: device reported an error")
)

// ResetError is returned when the peer resets a connection. Reason is the ASCII text the
// device may put in the RST payload (usb-usbmux-lockdown.md §2.5), without a trailing newline.
// It matches ErrReset with errors.Is.
type ResetError struct {
	Reason string
	Flags  TCPFlags // flags of the packet that ended the connection
}

// Error implements error.
func (e *ResetError) Error() string {
	s := "usbmux: connection reset by device"
	if e.Flags != FlagRST && e.Flags != FlagRST|FlagACK {
		s += fmt.Sprintf(" (unexpected flags %s)", e.Flags)
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Is makes errors.Is(err, ErrReset) true.
func (e *ResetError) Is(target error) bool { return target == ErrReset }

// VersionError is returned by NewMux when the device's VERSION reply is not usable.
type VersionError struct{ Major, Minor uint32 }

// Error implements error.
func (e *VersionError) Error() string {
	return fmt.Sprintf("usbmux: device speaks mux version %d.%d, want 1 or 2", e.Major, e.Minor)
}

// Is makes errors.Is(err, ErrVersion) true.
func (e *VersionError) Is(target error) bool { return target == ErrVersion }

// ControlError carries a CONTROL error message the device sent instead of completing the
// handshake. It matches ErrDeviceControl.
type ControlError struct{ Msg ControlMessage }

// Error implements error.
func (e *ControlError) Error() string { return "usbmux: device control message: " + e.Msg.String() }

// Is makes errors.Is(err, ErrDeviceControl) true.
func (e *ControlError) Is(target error) bool { return target == ErrDeviceControl }

// timeoutError is returned by Read and Write when a deadline passes. It is a net.Error with
// Timeout() true and matches os.ErrDeadlineExceeded.
type timeoutError struct{}

func (timeoutError) Error() string        { return "usbmux: i/o timeout" }
func (timeoutError) Timeout() bool        { return true }
func (timeoutError) Temporary() bool      { return true }
func (timeoutError) Is(target error) bool { return target == os.ErrDeadlineExceeded }
