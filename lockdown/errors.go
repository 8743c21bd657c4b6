package lockdown

import (
	"errors"
	"fmt"
)

// Error is a failure reported by lockdownd: the reply carried an `Error`
// string (iOS ≥ 5) or `Result: "Failure"` (older iOS).
// Source: usb-usbmux-lockdown.md §5.2–5.3; libimobiledevice-client-needs.md §2.2.
type Error struct {
	// Request is the verb that failed ("Pair", "StartSession", ...).
	Request string
	// Code is lockdown's error string, e.g. "InvalidHostID". It is
	// "Failure" when an old device only said Result: Failure.
	Code string
}

// Error returns "lockdown: <Request>: <Code>".
func (e *Error) Error() string {
	if e.Request == "" {
		return "lockdown: " + e.Code
	}
	return fmt.Sprintf("lockdown: %s: %s", e.Request, e.Code)
}

// Is matches sentinels by Code, so errors.Is(err, ErrInvalidHostID) works
// for any request that failed with that code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return t.Code == e.Code && (t.Request == "" || t.Request == e.Request)
}

// Hint says in plain language what the user can do about the error.
// It is empty for codes without useful advice.
func (e *Error) Hint() string {
	return hints[e.Code]
}

// The lockdown error strings callers branch on (usb-usbmux-lockdown.md §5.3
// "Lockdown error strings"). Compare with errors.Is.
var (
	ErrPasswordProtected                   = &Error{Code: "PasswordProtected"}
	ErrUserDeniedPairing                   = &Error{Code: "UserDeniedPairing"}
	ErrPairingDialogResponsePending        = &Error{Code: "PairingDialogResponsePending"}
	ErrInvalidHostID                       = &Error{Code: "InvalidHostID"}
	ErrMissingHostID                       = &Error{Code: "MissingHostID"}
	ErrSessionActive                       = &Error{Code: "SessionActive"}
	ErrSessionInactive                     = &Error{Code: "SessionInactive"}
	ErrInvalidService                      = &Error{Code: "InvalidService"}
	ErrMissingValue                        = &Error{Code: "MissingValue"}
	ErrGetProhibited                       = &Error{Code: "GetProhibited"}
	ErrSetProhibited                       = &Error{Code: "SetProhibited"}
	ErrEscrowLocked                        = &Error{Code: "EscrowLocked"}
	ErrInvalidPairRecord                   = &Error{Code: "InvalidPairRecord"}
	ErrPairingProhibitedOverThisConnection = &Error{Code: "PairingProhibitedOverThisConnection"}
)

// Errors raised on the host side, before or instead of a device reply.
var (
	// ErrDeviceCertMismatch reports that the device's TLS certificate is not
	// the DeviceCertificate of the pair record (STYLE rule 5): either the
	// record belongs to another device, the device was reset, or something
	// sits between host and device.
	ErrDeviceCertMismatch = errors.New("lockdown: the device's TLS certificate does not match the DeviceCertificate in the pair record (wrong or stale pair record, or a different device); unpair and pair again")
	// ErrPairingTimeout reports that the Trust dialog was not answered in time.
	ErrPairingTimeout = errors.New("lockdown: pairing timed out waiting for the user to tap \"Trust\" on the device")
	// ErrNoSession reports a call that needs a session started with StartSession.
	ErrNoSession = errors.New("lockdown: no session (call StartSession first)")
	// ErrNoEscrowBag reports StartService with escrow=true but a pair record
	// without EscrowBag (libimobiledevice fails locally the same way,
	// libimobiledevice-client-needs.md §2.6).
	ErrNoEscrowBag = errors.New("lockdown: pair record has no EscrowBag; pair again to obtain one")
	// ErrNotLockdown reports a QueryType answer other than
	// com.apple.mobile.lockdown (e.g. a device in restore mode).
	ErrNotLockdown = errors.New("lockdown: device is not running lockdownd in normal mode")
	// ErrUDIDMismatch reports that the device on the connection is not the
	// one asked for.
	ErrUDIDMismatch = errors.New("lockdown: device UniqueDeviceID differs from the requested UDID")
)

// hints maps lockdown error strings to advice (facts: §5.3 table, §7.6,
// pitfalls 14, 26–30).
var hints = map[string]string{
	"PasswordProtected":                   "unlock the device with its passcode and try again",
	"UserDeniedPairing":                   "\"Don't Trust\" was tapped on the device; unplug and replug it, then tap \"Trust\"",
	"PairingDialogResponsePending":        "tap \"Trust\" on the device and enter the passcode if asked",
	"InvalidHostID":                       "the device does not know this computer's pairing (trust was reset or the record is stale); unpair and pair again",
	"MissingHostID":                       "the pair record has no HostID; pair again",
	"SessionActive":                       "a session is already running on this connection; reconnect",
	"SessionInactive":                     "start a session first (the device is paired but no session is active)",
	"InvalidSessionID":                    "the session ended; reconnect",
	"MissingSessionID":                    "the session ended; reconnect",
	"InvalidService":                      "the device does not offer this service over lockdown (iOS 17 developer services need a tunnel)",
	"ServiceProhibited":                   "the device refuses this service (restrictions or supervision)",
	"ServiceLimit":                        "too many connections to this service; close other tools and retry",
	"MissingValue":                        "the value is not available; for services needing the escrow bag, unlock the device once after boot",
	"GetProhibited":                       "the device only returns this value to a paired host inside a session",
	"SetProhibited":                       "the device does not allow changing this value",
	"RemoveProhibited":                    "the device does not allow removing this value",
	"ImmutableValue":                      "this value cannot be changed",
	"EscrowLocked":                        "the device has not been unlocked since it booted; unlock it and retry",
	"InvalidPairRecord":                   "the device rejected the pair record; remove it and pair again",
	"MissingPairRecord":                   "no pair record was sent; pair again",
	"SavePairRecordFailed":                "the device could not store the pairing; reboot it and pair again",
	"PairingProhibitedOverThisConnection": "pairing is only possible over USB; connect the cable",
	"MCChallengeRequired":                 "the device is supervised and needs supervised pairing",
	"MCProtected":                         "a configuration profile forbids this action",
	"FMiPProtected":                       "Find My forbids this action; turn it off on the device",
	"InvalidActivationRecord":             "the device is not activated; activate it first",
	"MissingActivationRecord":             "the device is not activated; activate it first",
	"Failure":                             "the device reported a failure without details (old iOS)",
}
