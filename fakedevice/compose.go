package fakedevice

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/fakedevice/lockdownd"
	"github.com/ibackup/ibackup/fakedevice/memlink"
	"github.com/ibackup/ibackup/fakedevice/profile"
	"github.com/ibackup/ibackup/lockdown/notifyproxy"
	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/usbmux"
)

// Service names (mobilebackup2-and-backup-format.md §1.1, §7.1).
const (
	ServiceAFC          = "com.apple.afc"
	ServiceBackup       = "com.apple.mobilebackup2"
	ServiceNotification = "com.apple.mobile.notification_proxy"
	ServiceInstallation = "com.apple.mobile.installation_proxy"
	// ServiceInsecureNotification is usable before trust (usbmuxd's
	// preflight starts it, usb-usbmux-lockdown.md §5.6).
	ServiceInsecureNotification = "com.apple.mobile.insecure_notification_proxy"
)

// lockdowndConfig maps the phone, its profile and the faults onto
// lockdownd's configuration for one link.
func (d *Device) lockdowndConfig(l lockdownd.PortListener) lockdownd.Config {
	values, err := d.phone.Values()
	if err != nil {
		values = d.prof.Values(d.phone.Config.Identity)
	}
	cfg := lockdownd.Config{
		Values:  values,
		Domains: d.prof.Domains(),
		// WillEncrypt follows the backup service's encryption setting,
		// which ChangePassword changes while the phone runs (§6.5).
		LiveValues: func(domain string) map[string]any {
			if domain != "com.apple.mobile.backup" {
				return nil
			}
			return map[string]any{"WillEncrypt": d.enc.WillEncrypt()}
		},
		StatePath: d.phone.StatePath(),
		DeviceKey: d.opts.DeviceKey,
		Listener:  l,
		Services:  d.services(),
		Locked:    d.faults.Locked,
		WrongCert: d.faults.WrongCert,
		// libimobiledevice caps TLS at 1.0 for ProductVersion < 10
		// (libimobiledevice-client-needs.md §2.5).
		LegacyTLS: d.prof.TLSMaxVersion == tls.VersionTLS10,
		Logger:    d.opts.Logger,
	}
	switch {
	case d.faults.DenyTrust:
		cfg.Trust = lockdownd.TrustPolicy{Mode: lockdownd.TrustDeny}
	case d.faults.TrustDelay > 0:
		cfg.Trust = lockdownd.TrustPolicy{Mode: lockdownd.TrustAccept, Delay: d.faults.TrustDelay}
	}
	return cfg
}

// services lists every device service that exists.
func (d *Device) services() []lockdownd.Service {
	var out []lockdownd.Service
	if d.afc != nil {
		// AFC was seen without service TLS on iOS 12 (usb-usbmux-lockdown.md §7.3).
		out = append(out, lockdownd.Service{Name: ServiceAFC, Serve: d.afc.Serve})
	}
	out = append(out,
		lockdownd.Service{Name: ServiceNotification, Serve: d.notify.Serve},
		lockdownd.Service{Name: ServiceInsecureNotification, Serve: d.notify.Serve},
		lockdownd.Service{Name: ServiceInstallation, Serve: d.inst.Serve},
	)
	out = append(out, lockdownd.Service{
		Name: ServiceBackup, SSL: true, EscrowBag: true, // §7.3, libimobiledevice#1540
		Serve: func(ctx context.Context, conn net.Conn) error {
			return backupagent.Serve(ctx, conn, d.backupConfig(ctx))
		},
	})
	return out
}

// backupConfig maps the profile and faults onto the backup agent.
func (d *Device) backupConfig(ctx context.Context) backupagent.Config {
	id := d.phone.Config.Identity
	cfg := backupagent.Config{
		ContentDir: d.phone.FilesDir(),
		DLMajor:    int64(d.prof.DeviceLinkVersion),
		Lockdown: backupfmt.Lockdown{
			ProductVersion: d.prof.ProductVersion, BuildVersion: d.prof.BuildVersion,
			ProductType: d.prof.ProductType, DeviceName: id.DeviceName,
			SerialNumber: id.SerialNumber, UniqueDeviceID: id.UniqueDeviceID,
		},
		SystemDomainsVersion: d.prof.SystemDomainsVersion,
		// iOS 5–9 phones write Manifest.mbdb backups with a flat layout (§5.7).
		MBDB:       d.prof.Manifest == profile.ManifestMBDB,
		State:      d.restore,
		Cache:      d.cache,
		Encryption: d.enc,
		Faults: backupagent.Faults{
			RemoteErrorFile: d.faults.RemoteErrorFile,
			TruncateFile:    d.faults.TruncateFile,
			FinalError:      d.faults.Error,
			DeviceFull:      d.faults.DiskFull,
		},
		Logger: d.opts.Logger,
	}
	d.passcodePrompt(ctx, &cfg)
	return cfg
}

// passcodePrompt simulates the iOS 16.1+ passcode prompt before a backup
// (mobilebackup2-and-backup-format.md §1.1, §2.7): the phone posts
// com.apple.LocalAuthentication.ui.presented, waits for the user, then posts
// ui.dismissed. A phone of such a profile with a passcode prompts and the
// simulated user answers at once; the passcode-wait fault sets the delay,
// and a prompt nobody answers ends the backup with MBError 208 (at once,
// where a real phone waits 30 minutes).
func (d *Device) passcodePrompt(ctx context.Context, cfg *backupagent.Config) {
	wait := d.faults.PasscodeWait
	if wait == 0 && !(d.prof.PasscodePromptOnBackup && d.phone.Config.Passcode != "") {
		return
	}
	if wait == PasscodeNever {
		d.notify.Hub().Post(notifyproxy.PasscodePromptPresented)
		cfg.Faults.FinalError = 208
		return
	}
	prev := cfg.Faults.OnFile
	cfg.Faults.OnFile = func(n int) {
		if n == 1 {
			d.notify.Hub().Post(notifyproxy.PasscodePromptPresented)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			d.notify.Hub().Post(notifyproxy.PasscodePromptDismissed)
		}
		if prev != nil {
			prev(n)
		}
	}
}

// faultLink wraps the device end of the link and triggers the byte-count
// faults (link-drop-after, stall-after) of the memlink knobs.
type faultLink struct {
	usbmux.Link
	f                  *memlink.Faults
	dropAfter, stallAt int64

	mu    sync.Mutex
	moved int64
	fired bool
}

func (l *faultLink) count(n int) {
	if n <= 0 {
		return
	}
	l.mu.Lock()
	l.moved += int64(n)
	drop := l.dropAfter > 0 && l.moved >= l.dropAfter
	stall := l.stallAt > 0 && l.moved >= l.stallAt
	fire := (drop || stall) && !l.fired
	if fire {
		l.fired = true
	}
	l.mu.Unlock()
	if !fire {
		return
	}
	if drop {
		l.f.Drop()
	} else {
		l.f.Stall()
	}
}

// Read counts bytes from the host.
func (l *faultLink) Read(p []byte) (int, error) {
	n, err := l.Link.Read(p)
	l.count(n)
	return n, err
}

// Write counts bytes to the host.
func (l *faultLink) Write(p []byte) (int, error) {
	n, err := l.Link.Write(p)
	l.count(n)
	return n, err
}

// deviceLink applies the USB link faults and returns the device end to serve.
func (d *Device) deviceLink(dev usbmux.Link, f *memlink.Faults) usbmux.Link {
	if d.faults.CorruptAfter > 0 {
		f.CorruptAfter(d.faults.CorruptAfter)
	}
	if d.faults.Rate > 0 {
		f.RateLimit(d.faults.Rate)
	}
	if d.faults.LinkDropAfter > 0 || d.faults.StallAfter > 0 {
		return &faultLink{Link: dev, f: f, dropAfter: d.faults.LinkDropAfter, stallAt: d.faults.StallAfter}
	}
	return dev
}
