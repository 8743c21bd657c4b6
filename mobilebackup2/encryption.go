package mobilebackup2

// Backup encryption on the phone: the ChangePassword request
// (mobilebackup2-and-backup-format.md §6.5; idevicebackup2 `encryption
// on|off`, `changepw`, libimobiledevice-client-needs.md §4.1, §4.6).

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ibackup/ibackup/mobilebackup2/devicelink"
)

// Errors of encryption changes and encrypted restores; callers branch on
// them with errors.Is. A *PasswordError carries them.
var (
	// ErrWrongPassword: the phone (207 "Invalid password") or the backup's
	// keybag refused the backup password.
	ErrWrongPassword = errors.New("mobilebackup2: wrong backup password")
	// ErrPasswordRequired: the backup is encrypted and no password was given.
	ErrPasswordRequired = errors.New("mobilebackup2: the backup is encrypted; a password is required")
	// ErrAlreadyEncrypted: encryption is already on (enable refused).
	ErrAlreadyEncrypted = errors.New("mobilebackup2: backup encryption is already enabled")
	// ErrNotEncrypted: encryption is off (disable or change refused).
	ErrNotEncrypted = errors.New("mobilebackup2: backup encryption is not enabled")
	// ErrPasscodeRequired: the phone asked for its passcode to confirm the
	// change and nobody entered it (MBError 208).
	ErrPasscodeRequired = errors.New("mobilebackup2: the phone's passcode was not entered to confirm")
)

// PasswordError is a refused encryption change or encrypted restore. Kind
// is one of the sentinels above; Device is the phone's result when the
// phone decided (nil for checks made on the host before anything was sent).
type PasswordError struct {
	Kind   error
	Device *DeviceError
	// Also lists further sentinels the error matches (e.g.
	// ErrBackupUnusable for a restore refused before sending).
	Also []error
}

// Error implements error.
func (e *PasswordError) Error() string {
	s := e.Kind.Error()
	if e.Device != nil {
		s += fmt.Sprintf(" (the phone reported error %d", e.Device.Code)
		if e.Device.Description != "" {
			s += ": " + e.Device.Description
		}
		s += ")"
	}
	return s
}

// Unwrap makes errors.Is match Kind, the device error and Also.
func (e *PasswordError) Unwrap() []error {
	out := []error{e.Kind}
	if e.Device != nil {
		out = append(out, e.Device)
	}
	return append(out, e.Also...)
}

// Hint returns what to do.
func (e *PasswordError) Hint() string {
	switch e.Kind {
	case ErrWrongPassword:
		return "the backup password is wrong; it is the password set with 'encryption on' or 'encryption changepw' when this backup was made (nothing was changed)"
	case ErrPasswordRequired:
		return "the backup is encrypted: give its password with --password"
	case ErrAlreadyEncrypted:
		return "backups are already encrypted; use 'encryption changepw' to change the password"
	case ErrNotEncrypted:
		return "backups are not encrypted; use 'encryption on' to set a password"
	case ErrPasscodeRequired:
		return "unlock the phone and enter its passcode when it asks to confirm the change, then try again"
	}
	return ""
}

// PasswordChange describes one ChangePassword request (§6.5): enable =
// only New, disable = only Old, change = both.
type PasswordChange struct {
	// Target is the phone's UDID (TargetIdentifier).
	Target string
	// Old is the current backup password ("" to enable encryption).
	Old string
	// New is the new backup password ("" to disable encryption).
	New string
	// WillEncrypt, when known (lockdown com.apple.mobile.backup
	// WillEncrypt), makes impossible requests fail on the host before
	// anything is sent, as idevicebackup2 does.
	WillEncrypt *bool
	// Sent, when set, is called once the request is on its way: from iOS 13
	// the phone may now ask for its passcode, and the caller can say so.
	Sent func()
}

// ChangePassword turns backup encryption on or off or changes the backup
// password. The request is a top-level message (keys at top level, no
// Options, §2.2); the phone answers with a final result after any
// DeviceLink requests, which are refused. A wrong old password gives a
// *PasswordError matching ErrWrongPassword; a passcode nobody entered
// ErrPasscodeRequired.
func (c *Client) ChangePassword(ctx context.Context, p PasswordChange) error {
	if !c.handshok {
		return ErrNotHandshaken
	}
	if p.Old == "" && p.New == "" {
		return errors.New("mobilebackup2: ChangePassword needs an old or a new password")
	}
	if p.WillEncrypt != nil {
		switch {
		case p.Old == "" && *p.WillEncrypt:
			return &PasswordError{Kind: ErrAlreadyEncrypted}
		case p.Old != "" && !*p.WillEncrypt:
			return &PasswordError{Kind: ErrNotEncrypted}
		}
	}
	req := map[string]any{"MessageName": "ChangePassword", "TargetIdentifier": p.Target}
	if p.New != "" {
		req["NewPassword"] = p.New
	}
	if p.Old != "" {
		req["OldPassword"] = p.Old
	}
	defer c.watch(ctx)()
	if err := c.dl.WriteProcessMessage(req); err != nil {
		return c.ctxErr(ctx, err)
	}
	if p.Sent != nil {
		p.Sent()
	}
	final, err := c.simpleLoop(ctx)
	if err != nil {
		return err
	}
	if final.code == 0 {
		return nil
	}
	return passwordResult(&DeviceError{Code: final.code, Description: final.description})
}

// passwordResult classifies a failed ChangePassword or encrypted restore.
func passwordResult(de *DeviceError) error {
	d := strings.ToLower(de.Description)
	switch {
	case de.Code == CodeDeviceLocked:
		return &PasswordError{Kind: ErrPasscodeRequired, Device: de}
	case de.Code != CodePassword:
		return de
	case strings.Contains(d, "already"):
		return &PasswordError{Kind: ErrAlreadyEncrypted, Device: de}
	case strings.Contains(d, "not enabled") || strings.Contains(d, "no backup password"):
		return &PasswordError{Kind: ErrNotEncrypted, Device: de}
	}
	return &PasswordError{Kind: ErrWrongPassword, Device: de}
}

// simpleLoop waits for the final result of a request that needs no files,
// refusing any DeviceLink request so the phone never waits (§2.3).
func (c *Client) simpleLoop(ctx context.Context) (*finalResult, error) {
	e := &engine{dl: c.dl}
	for {
		m, err := c.dl.Read()
		if err != nil {
			return nil, c.ctxErr(ctx, err)
		}
		switch m.Name {
		case devicelink.MsgProcessMessage, devicelink.MsgDisconnect:
			return e.final(m)
		}
		if err := c.dl.WriteStatus(devicelink.StatusError, "Operation not supported", map[string]any{}); err != nil {
			return nil, c.ctxErr(ctx, err)
		}
	}
}
