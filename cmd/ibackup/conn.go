package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ibackup/ibackup/lockdown"
	"github.com/spf13/pflag"
)

// target is one phone a device command talks to.
type target struct {
	// UDID is the phone's UniqueDeviceID.
	UDID string
	// Dialer opens connections to the phone's ports.
	Dialer lockdown.Dialer
	// Store keeps pair records (a directory, or the usbmuxd daemon's).
	Store lockdown.PairRecordStore
	// close releases the link or daemon connection.
	close func() error
	// unplug, if set, drops the link at once, as pulling the cable would; it
	// is how a stalled phone is given up on.
	unplug    func()
	closeOnce sync.Once
	closeErr  error
}

// Unplug drops the link to the phone at once when the transport has one to
// drop, unblocking anything stuck on it, and otherwise closes the target.
func (t *target) Unplug() {
	if t.unplug != nil {
		t.unplug()
		return
	}
	_ = t.Close()
}

// Close releases the connection to the phone.
// It may be called more than once, from any goroutine.
func (t *target) Close() error {
	t.closeOnce.Do(func() {
		if t.close != nil {
			t.closeErr = t.close()
		}
	})
	return t.closeErr
}

// connFlags are the flags every device command shares.
type connFlags struct {
	udid    string
	usbmuxd string
	fakeDir string
	pairDir string
	faults  []string
	verbose bool
}

func (c *connFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&c.udid, "udid", "u", "", "`UDID` of the phone (needed when several are connected)")
	fs.StringVar(&c.usbmuxd, "usbmuxd", "", "go through a running usbmuxd at `ADDR` (UNIX:/path or HOST:PORT;\n\"default\" means "+defaultUsbmuxdAddr+")")
	fs.StringVar(&c.fakeDir, "fake-dir", "", "use the simulated phones in `DIR` (a default phone is created if DIR is empty)")
	fs.StringArrayVar(&c.faults, "fake-fault", nil, "with --fake-dir: make the phone show `FAULT` (repeatable; 'ibackup faults' lists them)")
	fs.BoolVarP(&c.verbose, "verbose", "v", false, "log protocol debug messages (and the simulated phone's) to stderr")
	fs.StringVar(&c.pairDir, "pair-dir", "", "pair record `DIR` for --fake-dir and direct USB\n(default DIR/.lockdown with --fake-dir, ~/.config/ibackup/lockdown for USB)")
}

// errNoDevice reports that no phone is connected.
var errNoDevice error = &hintError{err: errors.New("no phone found"),
	hint: "plug the phone in with a cable and unlock it; or try a simulated phone with --fake-dir DIR"}

// mode returns which transport the flags select and the usbmuxd address.
// Only the CLI reads USBMUXD_SOCKET_ADDRESS (usbmuxd issue item 3).
func (c *connFlags) mode(e *env) (kind, addr string) {
	switch {
	case c.fakeDir != "":
		return "fake", ""
	case c.usbmuxd == "default":
		return "usbmuxd", defaultUsbmuxdAddr
	case c.usbmuxd != "":
		return "usbmuxd", c.usbmuxd
	case e.getenv("USBMUXD_SOCKET_ADDRESS") != "":
		return "usbmuxd", e.getenv("USBMUXD_SOCKET_ADDRESS")
	}
	return "usb", ""
}

// open connects to the selected phone.
func (c *connFlags) open(ctx context.Context, e *env) (*target, error) {
	if len(c.faults) > 0 && c.fakeDir == "" {
		return nil, usageError("--fake-fault needs --fake-dir")
	}
	kind, addr := c.mode(e)
	switch kind {
	case "fake":
		return openFake(ctx, e, c)
	case "usbmuxd":
		return openUsbmuxd(ctx, e, c, addr)
	default:
		return openUSB(ctx, e, c)
	}
}

// pairStore returns the pair record directory store for fake and USB modes.
func (c *connFlags) pairStore(defaultDir string) (lockdown.PairRecordStore, error) {
	dir := c.pairDir
	if dir == "" {
		dir = defaultDir
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pair record directory: %w", err)
	}
	return lockdown.NewDirStore(dir), nil
}

// userPairDir is the default pair record directory for direct USB: a
// per-user directory, since /var/lib/lockdown belongs to root.
func userPairDir() string {
	d, err := os.UserConfigDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "ibackup", "lockdown")
}

// chooseUDID picks the phone from a list: the one named by --udid, or the
// only one.
func chooseUDID(want string, have []string) (string, error) {
	if want != "" {
		for _, u := range have {
			if strings.EqualFold(u, want) {
				return u, nil
			}
		}
		return "", fmt.Errorf("%w with UDID %s (connected: %s)", errNoDevice, want, listOrNone(have))
	}
	switch len(have) {
	case 0:
		return "", errNoDevice
	case 1:
		return have[0], nil
	}
	return "", usageError("%d phones connected (%s); choose one with --udid", len(have), strings.Join(have, ", "))
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// logger returns the debug logger selected by --verbose (nil = none).
func (c *connFlags) logger(e *env) *slog.Logger {
	if !c.verbose {
		return nil
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
