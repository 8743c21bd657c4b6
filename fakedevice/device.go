package fakedevice

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/ibackup/ibackup/fakedevice/afcd"
	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/fakedevice/devmux"
	"github.com/ibackup/ibackup/fakedevice/instproxyd"
	"github.com/ibackup/ibackup/fakedevice/lockdownd"
	"github.com/ibackup/ibackup/fakedevice/memlink"
	"github.com/ibackup/ibackup/fakedevice/notifyd"
	"github.com/ibackup/ibackup/fakedevice/phone"
	"github.com/ibackup/ibackup/fakedevice/profile"
	"github.com/ibackup/ibackup/usbmux"
)

// LockdownPort is lockdownd's device port (usb-usbmux-lockdown.md §5).
const LockdownPort uint16 = 62078

// DefaultKDFRounds keeps keybag derivation of simulated phones fast.
const DefaultKDFRounds = 1000

// Options configure Open.
type Options struct {
	// Faults are added to the faults stored in the phone's device.plist.
	Faults Faults
	// DeviceKey, when set, is the device key pair lockdownd uses if its
	// state has none yet (tests share one key to save RSA generation).
	DeviceKey *rsa.PrivateKey
	// Logger receives debug messages of every fake service; nil discards.
	Logger *slog.Logger
	// KDFRounds are the PBKDF2 rounds of new backup keybags (ITER and
	// DPIC); 0 means DefaultKDFRounds.
	KDFRounds uint32
}

// Device is one simulated phone ready to be connected.
type Device struct {
	phone  *phone.Phone
	prof   profile.Profile
	faults Faults
	opts   Options
	afc    *afcd.Server       // shared by all links: AFC locks are per phone
	notify *notifyd.Server    // one notification center per phone
	inst   *instproxyd.Server // the installed apps
	// restore holds a restore that waits for the phone to reboot
	// (RestoreShouldReboot false); Close applies it, like a restart.
	restore *backupagent.State
	// enc is the backup-encryption setting (password, keybag), kept in
	// <phone>/backup-encryption.plist and mirrored into device.plist.
	enc *backupagent.Encryption
	// cache is the phone's own backup cache (Status UUID → what it sent),
	// which keeps incremental backups proportional to the change.
	cache *backupagent.Cache
	// cfgMu serialises device.plist updates made by ChangePassword.
	cfgMu sync.Mutex

	closeOnce sync.Once
	closeErr  error

	mu     sync.Mutex
	closed bool
	links  map[*link]struct{}
	wg     sync.WaitGroup // one per served link
}

// Open loads the phone stored in dir (DIR/<UDID>).
func Open(dir string, opts Options) (*Device, error) {
	p, err := phone.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("fakedevice: %w", err)
	}
	prof, err := p.Profile()
	if err != nil {
		return nil, fmt.Errorf("fakedevice: %w", err)
	}
	stored, err := ParseFaults(p.Config.Faults)
	if err != nil {
		return nil, fmt.Errorf("fakedevice: %s: %w", p.ConfigPath(), err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.KDFRounds == 0 {
		opts.KDFRounds = DefaultKDFRounds
	}
	staging := filepath.Join(p.Dir, ".restore-staging")
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return nil, fmt.Errorf("fakedevice: %w", err)
	}
	apps, err := installedApps(p)
	if err != nil {
		return nil, err
	}
	d := &Device{phone: p, prof: prof, faults: stored.merge(opts.Faults), opts: opts, links: map[*link]struct{}{}}
	d.enc, err = backupagent.NewEncryption(backupagent.EncryptionConfig{
		Path:     filepath.Join(p.Dir, backupagent.EncryptionFile),
		Password: p.Config.BackupPassword,
		// Small KDF counts keep a simulated phone fast; real phones use
		// 10 000 and 10 000 000 rounds (mobilebackup2-and-backup-format.md §6.1).
		Iter: opts.KDFRounds, DPIC: opts.KDFRounds,
		NoDP:     !backupagent.EncryptsManifest(prof.ProductVersion),
		OnChange: d.encryptionChanged,
	})
	if err != nil {
		return nil, fmt.Errorf("fakedevice: %w", err)
	}
	// The AFC media root may be missing in a hand-made phone directory.
	if err := os.MkdirAll(p.AFCDir(), 0o755); err != nil {
		return nil, fmt.Errorf("fakedevice: %w", err)
	}
	afc, err := afcd.New(afcd.Config{Root: p.AFCDir(), Model: prof.ProductType})
	if err != nil {
		return nil, fmt.Errorf("fakedevice: %w", err)
	}
	d.afc, d.notify, d.inst = afc, notifyd.New(notifyd.Config{}), instproxyd.New(instproxyd.Config{Apps: apps})
	d.restore = backupagent.NewState(staging)
	d.cache = backupagent.NewCache()
	return d, nil
}

// encryptionChanged records a ChangePassword in device.plist, so the
// phone's settings stay readable and editable in one place.
func (d *Device) encryptionChanged(willEncrypt bool, password string) {
	d.cfgMu.Lock()
	defer d.cfgMu.Unlock()
	d.phone.Config.WillEncrypt = willEncrypt
	d.phone.Config.BackupPassword = password
	if err := d.phone.Save(); err != nil {
		d.opts.Logger.Warn("fakedevice: saving device.plist", "err", err)
	}
}

// UDID returns the phone's UniqueDeviceID.
func (d *Device) UDID() string { return d.phone.UDID() }

// Phone returns the phone on disk.
func (d *Device) Phone() *phone.Phone { return d.phone }

// Profile returns the phone's profile.
func (d *Device) Profile() profile.Profile { return d.prof }

// Faults returns the faults in effect.
func (d *Device) Faults() Faults { return d.faults }

// ErrClosed is returned by Connect after Close.
var ErrClosed = errors.New("fakedevice: device closed")

// Connect plugs the phone in: it returns the host end of a new in-memory
// USB link whose device end is served by the mux, lockdownd and every
// service until the link is closed (from either end). Closing the returned
// link waits until the device side has stopped.
func (d *Device) Connect(ctx context.Context) (usbmux.Link, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	host, dev, lf := memlink.New(memlink.Options{})
	mux := devmux.New(d.deviceLink(dev, lf), &devmux.Options{Logger: d.opts.Logger})
	ld, err := lockdownd.New(d.lockdowndConfig(mux))
	if err != nil {
		_ = host.Close()
		_ = dev.Close()
		return nil, fmt.Errorf("fakedevice: %w", err)
	}
	l, err := mux.Listen(LockdownPort)
	if err != nil {
		_ = ld.Close()
		_ = host.Close()
		_ = dev.Close()
		return nil, fmt.Errorf("fakedevice: %w", err)
	}
	lk := &link{Link: host, dev: dev, done: make(chan struct{})}
	d.links[lk] = struct{}{}
	d.wg.Add(1)
	go d.serve(lk, mux, ld, l)
	return lk, nil
}

// serve runs one link until it dies, then tears everything down.
// Goroutines: this one owns mux.Serve; one accepts lockdown connections;
// each lockdown connection runs in its own goroutine. All are waited for.
func (d *Device) serve(lk *link, mux *devmux.Server, ld *lockdownd.Server, l net.Listener) {
	defer d.wg.Done()
	defer close(lk.done)
	ctx, cancel := context.WithCancel(context.Background())
	var conns sync.WaitGroup
	conns.Add(1)
	go func() {
		defer conns.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				if err := ld.ServeConn(ctx, c); err != nil {
					d.opts.Logger.Debug("fakedevice: lockdown connection ended", "udid", d.UDID(), "err", err)
				}
			}()
		}
	}()
	err := mux.Serve(ctx)
	d.opts.Logger.Debug("fakedevice: link ended", "udid", d.UDID(), "err", err)
	cancel()
	_ = l.Close()
	_ = ld.Close()
	conns.Wait()
	d.mu.Lock()
	delete(d.links, lk)
	d.mu.Unlock()
}

// Close unplugs every link and waits until the device side has stopped.
func (d *Device) Close() error {
	d.mu.Lock()
	d.closed = true
	links := make([]*link, 0, len(d.links))
	for lk := range d.links {
		links = append(links, lk)
	}
	d.mu.Unlock()
	for _, lk := range links {
		lk.unplug()
	}
	d.wg.Wait()
	d.closeOnce.Do(func() {
		// Unplugging ends the session; the phone restarts and applies a
		// restore that was waiting for the reboot.
		rerr := d.restore.Reboot(d.phone.FilesDir())
		d.closeErr = errors.Join(rerr, d.afc.Close())
	})
	return d.closeErr
}

// link is the host end handed out by Connect.
type link struct {
	usbmux.Link
	dev  usbmux.Link // the device end, closed too so a stalled link cannot keep the phone running
	once sync.Once
	err  error
	done chan struct{} // closed when the device side has stopped
}

// unplug closes both ends of the cable.
func (l *link) unplug() {
	l.once.Do(func() {
		l.err = l.Link.Close()
		_ = l.dev.Close()
	})
}

// Close closes the link and waits for the device side to stop.
func (l *link) Close() error {
	l.unplug()
	<-l.done
	return l.err
}
