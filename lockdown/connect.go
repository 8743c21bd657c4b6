package lockdown

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ibackup/ibackup/lockdown/pairrecord"
)

// PairMode says what Connect does about pairing.
type PairMode int

const (
	// PairIfNeeded pairs when the store has no record for the device
	// (libimobiledevice's handshake does the same, §2.4 step 5).
	PairIfNeeded PairMode = iota
	// PairNever fails with ErrInvalidHostID when there is no record.
	PairNever
	// PairAlways pairs anew even if a record exists (`ibackup pair`).
	PairAlways
)

// String names the mode.
func (m PairMode) String() string {
	switch m {
	case PairIfNeeded:
		return "if-needed"
	case PairNever:
		return "never"
	case PairAlways:
		return "always"
	}
	return "PairMode(" + strconv.Itoa(int(m)) + ")"
}

// ConnectOptions configure Connect. The zero value pairs if needed and
// starts a session.
type ConnectOptions struct {
	Client Options
	Pair   PairMode
	// NoSession leaves the client without a session (plaintext: only the
	// values readable unpaired, §7.4).
	NoSession bool
}

// Connect opens lockdownd on the device behind d and returns a ready
// client, the way libimobiledevice's lockdownd_client_new_with_handshake
// does (libimobiledevice-client-needs.md §2.4): dial port 62078, QueryType
// (must be com.apple.mobile.lockdown), GetValue ProductVersion and
// UniqueDeviceID (must equal udid), load the pair record from store, pair
// when opts.Pair says so, ValidatePair on iOS < 7, then StartSession.
// The caller must Close the client; Close stops the session.
func Connect(ctx context.Context, d Dialer, udid string, store PairRecordStore, opts *ConnectOptions) (*Client, error) {
	var o ConnectOptions
	if opts != nil {
		o = *opts
	}
	if err := pairrecord.CheckUDID(udid); err != nil {
		return nil, fmt.Errorf("lockdown: %w", err)
	}
	conn, err := d.Dial(ctx, Port)
	if err != nil {
		return nil, fmt.Errorf("lockdown: connecting to lockdownd: %w", err)
	}
	c := NewClient(conn, &o.Client)
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	typ, err := c.QueryType(ctx)
	if err != nil {
		return nil, err
	}
	if typ != TypeLockdown {
		return nil, fmt.Errorf("%w (QueryType answered %q)", ErrNotLockdown, typ)
	}
	if _, err := c.GetValue(ctx, "", "ProductVersion"); err != nil {
		return nil, err
	}
	if v, err := c.GetValue(ctx, "", "UniqueDeviceID"); err == nil {
		if s, _ := v.(string); s != "" && !strings.EqualFold(s, udid) {
			return nil, fmt.Errorf("%w: asked for %s, device is %s", ErrUDIDMismatch, udid, s)
		}
	}
	rec, err := store.LoadPairRecord(ctx, udid)
	switch {
	case err == nil && o.Pair != PairAlways:
	case err == nil || errors.Is(err, pairrecord.ErrNotFound):
		if o.Pair == PairNever {
			return nil, fmt.Errorf("%w: device %s is not paired with this host", &Error{Request: "StartSession", Code: "InvalidHostID"}, udid)
		}
		if rec, err = c.Pair(ctx, store, udid); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("lockdown: loading pair record: %w", err)
	}
	if major(c.ProductVersion()) < 7 {
		if err := c.ValidatePair(ctx, rec); err != nil {
			return nil, err
		}
	}
	if !o.NoSession {
		if err := c.StartSession(ctx, rec); err != nil {
			return nil, err
		}
	}
	ok = true
	return c, nil
}

// major parses the major number of a ProductVersion ("17.5.1" → 17);
// unknown versions count as current, so no ValidatePair is sent.
func major(v string) int {
	s, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(s)
	if err != nil {
		return 1 << 30
	}
	return n
}

// PairRecordStore keeps pair records: a usbmuxd-layout directory
// (DirStore) or a usbmuxd daemon's ReadPairRecord/SavePairRecord/
// DeletePairRecord/ReadBUID (the usbmuxd client), so records are shared
// with other tools (usb-usbmux-lockdown.md §4, pitfall 12).
type PairRecordStore interface {
	// LoadPairRecord returns pairrecord.ErrNotFound (wrapped) when none.
	LoadPairRecord(ctx context.Context, udid string) (*pairrecord.Record, error)
	SavePairRecord(ctx context.Context, udid string, r *pairrecord.Record) error
	DeletePairRecord(ctx context.Context, udid string) error
	SystemBUID(ctx context.Context) (string, error)
}

// DirStore is a PairRecordStore over a usbmuxd-layout directory
// (/var/lib/lockdown on Linux); files are written atomically with mode 0600.
type DirStore struct {
	Dir pairrecord.Dir
}

// NewDirStore returns a DirStore for the directory path.
func NewDirStore(path string) *DirStore { return &DirStore{Dir: pairrecord.Dir{Path: path}} }

// LoadPairRecord reads <udid>.plist.
func (s *DirStore) LoadPairRecord(ctx context.Context, udid string) (*pairrecord.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.Dir.Load(udid)
}

// SavePairRecord writes <udid>.plist.
func (s *DirStore) SavePairRecord(ctx context.Context, udid string, r *pairrecord.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.Dir.Save(udid, r)
}

// DeletePairRecord removes <udid>.plist.
func (s *DirStore) DeletePairRecord(ctx context.Context, udid string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.Dir.Delete(udid)
}

// SystemBUID reads (or creates) SystemConfiguration.plist's SystemBUID.
func (s *DirStore) SystemBUID(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return s.Dir.SystemBUID()
}
