package mobilebackup2

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors callers branch on.
var (
	// ErrProtocol reports a peer that broke the DeviceLink/mobilebackup2 rules.
	ErrProtocol = errors.New("mobilebackup2: protocol error")
	// ErrNoCommonVersion reports a Hello answered with ErrorCode 1 (§2.1).
	ErrNoCommonVersion = errors.New("mobilebackup2: no common protocol version")
	// ErrUserCancelled reports a backup cancelled on the phone. Callers that
	// observe com.apple.itunes-client.syncCancelRequest cancel the context
	// with this cause (context.WithCancelCause) and get it back wrapped.
	ErrUserCancelled = errors.New("mobilebackup2: backup cancelled on the phone")
	// ErrDisconnected reports a connection that ended before the final result
	// (cable pulled, phone rebooted, DLMessageDisconnect).
	ErrDisconnected = errors.New("mobilebackup2: the phone disconnected before the backup finished")
	// ErrDiskFull reports that the backup disk ran out of space while
	// receiving files.
	ErrDiskFull = errors.New("mobilebackup2: the backup disk is full")
	// ErrNotHandshaken reports a request before Handshake.
	ErrNotHandshaken = errors.New("mobilebackup2: Handshake has not been run")
)

// DeviceError is a non-zero ErrorCode in the phone's final result
// (MBErrorDomain, mobilebackup2-and-backup-format.md §2.5).
type DeviceError struct {
	Code        int64
	Description string
}

// MBErrorDomain codes with a hint (§2.5, §8).
const (
	CodeSnapshotExists     = 3
	CodeNotFound           = 4
	CodeDeviceCleanup      = 102
	CodeUploadErrors       = 104
	CodeHostDiskSpace      = 105
	CodeDeviceDiskSpace    = 106
	CodeIncompatibleBackup = 203
	CodeNoStatus           = 204
	CodeCorruptBackup      = 205
	CodePassword           = 207
	CodeDeviceLocked       = 208
	CodeSetupNotFinished   = 212
)

// Error implements error.
func (e *DeviceError) Error() string {
	s := fmt.Sprintf("mobilebackup2: the phone reported error %d", e.Code)
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// Hint returns a plain-language explanation with what to do, or "".
func (e *DeviceError) Hint() string {
	switch e.Code {
	case CodeSnapshotExists:
		return "an earlier interrupted backup left a snapshot on the phone; restart (reboot) the phone and run the backup again"
	case CodeDeviceCleanup:
		return "the phone could not clean up its backup state; restart the phone and try again (a second restore without a reboot also gives this)"
	case CodeUploadErrors:
		return "the phone could not read some of its files (often because it was locked during the backup); keep it unlocked and try again"
	case CodeHostDiskSpace:
		return "there is not enough free space on the backup disk; free some space or choose another backup directory"
	case CodeDeviceDiskSpace:
		return "the phone's own storage is full (not the backup disk); free space on the phone (Settings > General > iPhone Storage: delete or offload apps, photos, videos) and try again; the backup on this computer was not changed"
	case CodeIncompatibleBackup:
		return "the backup is from a newer iOS version or an unsupported format; update the phone first"
	case CodeNoStatus:
		return "the backup has no usable status; make a new backup"
	case CodeCorruptBackup:
		return "the backup on disk does not match its manifest; run the backup again with --full"
	case CodePassword:
		return "the backup password is wrong, missing, or encryption settings changed; check the password"
	case CodeDeviceLocked:
		return "the phone asked for its passcode and nobody entered it (iOS 16.1+); unlock the phone, enter the passcode when asked, and run the backup again"
	case CodeSetupNotFinished:
		return "finish the setup assistant on the phone first"
	}
	return ""
}

// FileProblem names one file that failed verification.
type FileProblem struct {
	// Path is relative to the backup directory (e.g. "<UDID>/ab/ab12…").
	Path string
	// Domain and RelativePath name the phone's file when known.
	Domain, RelativePath string
	// Problem says what is wrong ("missing", "size 10, manifest says 20", ...).
	Problem string
}

// String implements fmt.Stringer.
func (p FileProblem) String() string {
	if p.Domain != "" {
		return fmt.Sprintf("%s (%s/%s): %s", p.Path, p.Domain, p.RelativePath, p.Problem)
	}
	return p.Path + ": " + p.Problem
}

// VerifyError reports a backup whose files do not check out; the previous
// good backup was kept.
type VerifyError struct {
	Problems []FileProblem
}

// Error implements error.
func (e *VerifyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mobilebackup2: backup verification failed for %d file(s)", len(e.Problems))
	for i, p := range e.Problems {
		if i == 10 {
			fmt.Fprintf(&b, "; and %d more", len(e.Problems)-10)
			break
		}
		b.WriteString("; ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Hint returns advice for a failed verification.
func (e *VerifyError) Hint() string {
	return "the received files do not match what the phone declared; the previous backup was kept — run the backup again"
}

// Hint returns the plain-language advice for err, or "" when there is none.
func Hint(err error) string {
	var pe *PasswordError
	if errors.As(err, &pe) {
		return pe.Hint()
	}
	var de *DeviceError
	if errors.As(err, &de) {
		return de.Hint()
	}
	var ve *VerifyError
	if errors.As(err, &ve) {
		return ve.Hint()
	}
	switch {
	case errors.Is(err, ErrBackupUnusable):
		return "nothing was sent to the phone; choose another version (ibackup versions), make a new backup, or use --force if you know better"
	case errors.Is(err, ErrUserCancelled):
		return "the backup was cancelled on the phone; the previous backup was kept"
	case errors.Is(err, ErrDiskFull):
		return "free some space on the backup disk or choose another directory; the previous backup was kept"
	case errors.Is(err, ErrStalled):
		return "check the cable and that the phone is unlocked, unplug and replug it, then run the command again; the previous backup was kept"
	case errors.Is(err, ErrDisconnected):
		return "check the cable and that the phone stays unlocked and trusts this computer, then run the backup again; the previous backup was kept"
	case errors.Is(err, ErrNoCommonVersion):
		return "the phone speaks a backup protocol version this tool does not support"
	}
	return ""
}
