package afc

import (
	"errors"
	"fmt"
)

// Status is an AFC status code, carried as a u64 in STATUS replies
// (libimobiledevice-client-needs.md §5.1, afc_error_t 0–23). A Status is
// also an error, so callers can write errors.Is(err, afc.StatusObjectNotFound).
type Status uint64

// Status codes sent by the device.
const (
	StatusSuccess             = Status(0)
	StatusUnknownError        = Status(1)
	StatusOpHeaderInvalid     = Status(2)
	StatusNoResources         = Status(3)
	StatusReadError           = Status(4)
	StatusWriteError          = Status(5)
	StatusUnknownPacketType   = Status(6)
	StatusInvalidArg          = Status(7)
	StatusObjectNotFound      = Status(8)
	StatusObjectIsDir         = Status(9)
	StatusPermDenied          = Status(10)
	StatusServiceNotConnected = Status(11)
	StatusOpTimeout           = Status(12)
	StatusTooMuchData         = Status(13)
	StatusEndOfData           = Status(14)
	StatusOpNotSupported      = Status(15)
	StatusObjectExists        = Status(16)
	StatusObjectBusy          = Status(17)
	StatusNoSpaceLeft         = Status(18)
	StatusOpWouldBlock        = Status(19)
	StatusIOError             = Status(20)
	StatusOpInterrupted       = Status(21)
	StatusOpInProgress        = Status(22)
	StatusInternalError       = Status(23)
)

var statusNames = [...]string{
	"success", "unknown error", "op header invalid", "no resources", "read error",
	"write error", "unknown packet type", "invalid argument", "object not found",
	"object is a directory", "permission denied", "service not connected",
	"operation timed out", "too much data", "end of data", "operation not supported",
	"object exists", "object busy", "no space left", "operation would block",
	"I/O error", "operation interrupted", "operation in progress", "internal error",
}

// String returns a readable name of the code.
func (s Status) String() string {
	if uint64(s) < uint64(len(statusNames)) {
		return statusNames[s]
	}
	return fmt.Sprintf("status %d", uint64(s))
}

// Error makes a Status usable as an error value and errors.Is target.
func (s Status) Error() string { return "afc: " + s.String() }

// ErrDirNotEmpty is matched by the error of a RemovePath on a non-empty
// directory: the device answers status 1 there, which libimobiledevice
// reports as AFC_E_DIR_NOT_EMPTY (libimobiledevice-client-needs.md §5.1).
var ErrDirNotEmpty = errors.New("afc: directory not empty")

// Error is a non-success status returned by the device for one operation.
type Error struct {
	Op     Opcode
	Path   string // the path the operation named, if any
	Status Status
}

// Error formats the failure with its operation and path.
func (e *Error) Error() string {
	if e.Path != "" {
		return fmt.Sprintf("afc: %s %q: %s", e.Op, e.Path, e.Status.String())
	}
	return fmt.Sprintf("afc: %s: %s", e.Op, e.Status.String())
}

// Unwrap exposes the Status for errors.Is/As.
func (e *Error) Unwrap() error { return e.Status }

// Is reports ErrDirNotEmpty for RemovePath status 1.
func (e *Error) Is(target error) bool {
	return target == ErrDirNotEmpty && e.Op == OpRemovePath && e.Status == StatusUnknownError
}
