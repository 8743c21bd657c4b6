package main

import (
	"context"
	"fmt"

	"github.com/ibackup/ibackup/lockdown"
	"github.com/ibackup/ibackup/mobilebackup2"
	"github.com/spf13/pflag"
)

func init() {
	register(&command{
		name:  "encryption",
		args:  "on|off|changepw",
		short: "turn backup encryption on or off, or change the backup password",
		long: `The phone keeps the backup password and encrypts every backup itself; only encrypted
backups keep Health, Keychain and Wi-Fi passwords (mobilebackup2-and-backup-format.md §6).

  ibackup encryption on --password NEW
  ibackup encryption off --password OLD
  ibackup encryption changepw --password OLD --new-password NEW

The phone may ask for its passcode to confirm (iOS 13 and later).`,
		setup: func(fs *pflag.FlagSet) func(context.Context, *env, []string) error {
			var c connFlags
			var password, newPassword string
			c.register(fs)
			fs.StringVar(&password, "password", "", "the backup `PASSWORD` (new one for 'on', current one for 'off' and 'changepw')")
			fs.StringVar(&newPassword, "new-password", "", "the new backup `PASSWORD` for 'changepw'")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usageError("want on, off or changepw")
				}
				change := mobilebackup2.PasswordChange{}
				switch args[0] {
				case "on":
					change.New = password
				case "off":
					change.Old = password
				case "changepw":
					change.Old, change.New = password, newPassword
					if newPassword == "" {
						return usageError("changepw needs --new-password")
					}
				default:
					return usageError("unknown action %q: want on, off or changepw", args[0])
				}
				if password == "" {
					return usageError("--password is required")
				}
				return runEncryption(ctx, e, &c, args[0], change)
			}
		},
	})
}

// runEncryption sends one ChangePassword request (§6.5).
func runEncryption(ctx context.Context, e *env, c *connFlags, action string, change mobilebackup2.PasswordChange) error {
	t, cl, err := connectLockdown(ctx, e, c, lockdown.PairIfNeeded, false)
	if err != nil {
		return err
	}
	defer t.Close()
	defer cl.Close()
	change.Target = t.UDID
	if v, err := cl.GetValue(ctx, "com.apple.mobile.backup", "WillEncrypt"); err == nil {
		if b, ok := v.(bool); ok {
			change.WillEncrypt = &b
		}
	}
	change.Sent = func() {
		fmt.Fprintln(e.stderr, "if the phone asks for its passcode, enter it to confirm")
	}
	conn, err := cl.StartService(ctx, t.Dialer, backupService, true)
	if err != nil {
		return err
	}
	mb := mobilebackup2.NewClient(conn)
	defer mb.Close()
	if _, err := mb.Handshake(ctx); err != nil {
		return err
	}
	if err := mb.ChangePassword(ctx, change); err != nil {
		return err
	}
	switch action {
	case "on":
		fmt.Fprintln(e.stdout, "backup encryption is on: the phone now makes encrypted backups")
	case "off":
		fmt.Fprintln(e.stdout, "backup encryption is off")
	default:
		fmt.Fprintln(e.stdout, "backup password changed")
	}
	return nil
}
