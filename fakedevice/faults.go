package fakedevice

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Faults are the failures a simulated phone can be told to show. Each field
// maps onto a knob of one package: the in-memory USB link (memlink), the
// fake lockdownd, or the fake backup agent. The zero value is a healthy
// phone.
type Faults struct {
	// DenyTrust: the simulated user taps "Don't Trust" (Pair → UserDeniedPairing).
	DenyTrust bool
	// TrustDelay: the Trust dialog is answered after this long (Pair →
	// PairingDialogResponsePending until then).
	TrustDelay time.Duration
	// Locked: the phone is locked with a passcode (Pair → PasswordProtected).
	Locked bool
	// WrongCert: lockdownd presents a TLS certificate that is not the
	// DeviceCertificate of the pair record.
	WrongCert bool
	// PasscodeWait: on a backup the phone asks for its passcode (iOS 16.1+)
	// and the user enters it after this long; PasscodeNever means never
	// (the phone gives up with MBError 208).
	PasscodeWait time.Duration
	// LinkDropAfter drops the USB link after this many bytes (0 = never).
	LinkDropAfter int64
	// StallAfter stops the USB link moving data after this many bytes.
	StallAfter int64
	// CorruptAfter flips one byte after this many bytes.
	CorruptAfter int64
	// Rate limits the USB link to this many bytes per second.
	Rate int64
	// Error makes the backup agent end the next backup with this MBError
	// code (208, 105, 3, 205, ...).
	Error int
	// RemoteErrorFile makes the N-th uploaded file (1-based) fail with a
	// per-file remote error.
	RemoteErrorFile int
	// TruncateFile makes the N-th uploaded file (1-based) arrive short.
	TruncateFile int
	// DiskFull: the phone's own storage is full. A backup ends before any
	// file is sent with MBError 106 (the phone cannot create its snapshot;
	// the code is [I], the facts document none for this case), a restore
	// with MBError 106 "Insufficient free disk space on device to restore"
	// at the phone's free-space check (mobilebackup2-and-backup-format.md
	// §2.5, §7.2 step 5), before anything was copied or downloaded.
	DiskFull bool
}

// PasscodeNever is the PasscodeWait of a user who never enters the passcode.
const PasscodeNever = time.Duration(-1)

// FaultHelp documents the fault syntax; the CLI prints it in --help and the
// README lists it.
const FaultHelp = `deny-trust            user taps "Don't Trust" when asked to pair
trust-delay=DURATION  Trust dialog answered after DURATION (e.g. 5s)
locked                phone locked with a passcode (pairing refused)
wrong-cert            lockdownd shows a certificate that is not the paired one
passcode-wait[=DUR]   backup asks for the passcode; entered after DUR, never without
                      (then the backup ends with MBError 208)
link-drop-after=BYTES USB link drops after BYTES (e.g. 2M)
stall-after=BYTES     USB link stops moving data after BYTES
corrupt-after=BYTES   one byte is flipped after BYTES
rate=BYTES/s          USB link limited to BYTES per second (e.g. 30M/s)
error=CODE            backup ends with MBError CODE (208, 105, 3, 205)
remote-error-file=N   the N-th file of a backup fails on the phone
truncate-file=N       the N-th file of a backup arrives truncated
disk-full             the phone's own storage is full: a backup ends with MBError 106
                      (snapshot cannot be created), a restore with MBError 106
                      (insufficient free disk space on device to restore)`

// ParseFaults parses fault specifications (FaultHelp), each possibly a
// comma-separated list, into one Faults value.
func ParseFaults(specs []string) (Faults, error) {
	var f Faults
	for _, s := range specs {
		for _, one := range strings.Split(s, ",") {
			one = strings.TrimSpace(one)
			if one == "" {
				continue
			}
			if err := f.apply(one); err != nil {
				return Faults{}, err
			}
		}
	}
	return f, nil
}

func (f *Faults) apply(spec string) error {
	name, val, hasVal := strings.Cut(spec, "=")
	need := func() error {
		if !hasVal || val == "" {
			return fmt.Errorf("fakedevice: fault %q needs a value (%s=...)", name, name)
		}
		return nil
	}
	noVal := func() error {
		if hasVal {
			return fmt.Errorf("fakedevice: fault %q takes no value", name)
		}
		return nil
	}
	var err error
	switch name {
	case "deny-trust":
		err = noVal()
		f.DenyTrust = true
	case "locked":
		err = noVal()
		f.Locked = true
	case "wrong-cert":
		err = noVal()
		f.WrongCert = true
	case "disk-full":
		err = noVal()
		f.DiskFull = true
	case "trust-delay":
		if err = need(); err == nil {
			f.TrustDelay, err = parseDuration(name, val)
		}
	case "passcode-wait":
		f.PasscodeWait = PasscodeNever
		if hasVal {
			f.PasscodeWait, err = parseDuration(name, val)
		}
	case "link-drop-after":
		if err = need(); err == nil {
			f.LinkDropAfter, err = ParseBytes(val)
		}
	case "stall-after":
		if err = need(); err == nil {
			f.StallAfter, err = ParseBytes(val)
		}
	case "corrupt-after":
		if err = need(); err == nil {
			f.CorruptAfter, err = ParseBytes(val)
		}
	case "rate":
		if err = need(); err == nil {
			f.Rate, err = ParseBytes(strings.TrimSuffix(val, "/s"))
			if err == nil && f.Rate <= 0 {
				err = fmt.Errorf("fakedevice: rate must be positive")
			}
		}
	case "error":
		if err = need(); err == nil {
			f.Error, err = parseCount(name, val)
		}
	case "remote-error-file":
		if err = need(); err == nil {
			f.RemoteErrorFile, err = parseCount(name, val)
		}
	case "truncate-file":
		if err = need(); err == nil {
			f.TruncateFile, err = parseCount(name, val)
		}
	default:
		return fmt.Errorf("fakedevice: unknown fault %q (known: deny-trust, trust-delay=, locked, wrong-cert, disk-full, passcode-wait, link-drop-after=, stall-after=, corrupt-after=, rate=, error=, remote-error-file=, truncate-file=)", name)
	}
	return err
}

func parseDuration(name, v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("fakedevice: fault %s: bad duration %q", name, v)
	}
	return d, nil
}

func parseCount(name, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("fakedevice: fault %s: want a positive number, got %q", name, v)
	}
	return n, nil
}

// ParseBytes parses a byte count with an optional K, M, G suffix (powers of
// 1024; "KiB", "MB" and friends are accepted the same way).
func ParseBytes(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mul := int64(1)
	switch {
	case strings.HasSuffix(t, "K"):
		mul = 1 << 10
	case strings.HasSuffix(t, "M"):
		mul = 1 << 20
	case strings.HasSuffix(t, "G"):
		mul = 1 << 30
	}
	if mul > 1 {
		t = t[:len(t)-1]
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 || n*float64(mul) > 1<<62 {
		return 0, fmt.Errorf("fakedevice: bad byte count %q", s)
	}
	return int64(n * float64(mul)), nil
}

// merge returns f with every fault set in o added (o wins where both set a value).
func (f Faults) merge(o Faults) Faults {
	f.DenyTrust = f.DenyTrust || o.DenyTrust
	f.Locked = f.Locked || o.Locked
	f.WrongCert = f.WrongCert || o.WrongCert
	f.DiskFull = f.DiskFull || o.DiskFull
	pick := func(a, b int64) int64 {
		if b != 0 {
			return b
		}
		return a
	}
	f.TrustDelay = time.Duration(pick(int64(f.TrustDelay), int64(o.TrustDelay)))
	f.PasscodeWait = time.Duration(pick(int64(f.PasscodeWait), int64(o.PasscodeWait)))
	f.LinkDropAfter = pick(f.LinkDropAfter, o.LinkDropAfter)
	f.StallAfter = pick(f.StallAfter, o.StallAfter)
	f.CorruptAfter = pick(f.CorruptAfter, o.CorruptAfter)
	f.Rate = pick(f.Rate, o.Rate)
	f.Error = int(pick(int64(f.Error), int64(o.Error)))
	f.RemoteErrorFile = int(pick(int64(f.RemoteErrorFile), int64(o.RemoteErrorFile)))
	f.TruncateFile = int(pick(int64(f.TruncateFile), int64(o.TruncateFile)))
	return f
}
