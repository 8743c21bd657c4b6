// Package phone stores simulated iPhones on disk. A phone lives in
// DIR/<UDID>/ and consists of:
//
//	device.plist    profile name, seed, identity values, settings and faults (this package)
//	lockdownd.plist key pair, paired hosts, escrow bag (owned by fakedevice/lockdownd)
//	files/<Domain>/<relativePath>   the content a backup copies (edit it to change the phone)
//	afc/            the media area the AFC service serves
//
// Tests and users create phones with Create, change them by editing the
// files/ tree between runs, and inspect them afterwards.
package phone

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ibackup/ibackup/fakedevice/profile"
	"github.com/ibackup/ibackup/lockdown/pairrecord"
	"howett.net/plist"
)

// File names inside a phone directory.
const (
	ConfigFile = "device.plist"
	StateFile  = "lockdownd.plist"
	FilesDir   = "files"
	AFCDir     = "afc"
)

// ErrNotPhone is returned by Load for a directory without device.plist.
var ErrNotPhone = errors.New("phone: not a simulated phone (no " + ConfigFile + ")")

// Config is the content of device.plist.
type Config struct {
	// Profile is the profile name (see fakedevice/profile).
	Profile string `plist:"Profile"`
	// Seed generated the identity and the initial content.
	Seed int64 `plist:"Seed"`
	// Identity holds the per-handset identity values.
	Identity profile.Identity `plist:"Identity"`
	// Values overrides or adds root-domain lockdown values (optional).
	Values map[string]any `plist:"Values,omitempty"`
	// WillEncrypt is the device's backup encryption setting
	// (com.apple.mobile.backup WillEncrypt).
	WillEncrypt bool `plist:"WillEncrypt"`
	// BackupPassword is the backup password the device holds while
	// WillEncrypt is true. The simulator keeps it in clear text; it is a test
	// device.
	BackupPassword string `plist:"BackupPassword,omitempty"`
	// Passcode, when set, is the passcode the simulated user types when the
	// device asks (iOS 16.1+ backups, encryption changes).
	Passcode string `plist:"Passcode,omitempty"`
	// Faults are fault specifications applied every time the phone is served
	// (see fakedevice.ParseFaults).
	Faults []string `plist:"Faults,omitempty"`
	// Created is when the phone was made.
	Created time.Time `plist:"Created"`
}

// Phone is one simulated phone directory.
type Phone struct {
	// Dir is DIR/<UDID>.
	Dir string
	// Config is device.plist as loaded.
	Config Config
}

// UDID returns the phone's UniqueDeviceID.
func (p *Phone) UDID() string { return p.Config.Identity.UniqueDeviceID }

// Profile returns the phone's profile.
func (p *Phone) Profile() (profile.Profile, error) { return profile.Lookup(p.Config.Profile) }

// FilesDir returns the content tree root, files/<Domain>/<relativePath>.
func (p *Phone) FilesDir() string { return filepath.Join(p.Dir, FilesDir) }

// AFCDir returns the AFC media root.
func (p *Phone) AFCDir() string { return filepath.Join(p.Dir, AFCDir) }

// StatePath returns lockdownd's state file path.
func (p *Phone) StatePath() string { return filepath.Join(p.Dir, StateFile) }

// ConfigPath returns the device.plist path.
func (p *Phone) ConfigPath() string { return filepath.Join(p.Dir, ConfigFile) }

// Values returns the root-domain lockdown values: the profile's values for
// the identity, with Config.Values applied on top.
func (p *Phone) Values() (map[string]any, error) {
	prof, err := p.Profile()
	if err != nil {
		return nil, err
	}
	v := prof.Values(p.Config.Identity)
	for k, x := range p.Config.Values {
		v[k] = x
	}
	return v, nil
}

// Save writes device.plist atomically (XML, so people can edit it).
func (p *Phone) Save() error {
	b, err := plist.MarshalIndent(&p.Config, plist.XMLFormat, "\t")
	if err != nil {
		return fmt.Errorf("phone: encode %s: %w", ConfigFile, err)
	}
	if err := pairrecord.WriteFileAtomic(p.ConfigPath(), b, 0o644); err != nil {
		return fmt.Errorf("phone: %w", err)
	}
	return nil
}

// Load reads the phone in dir (DIR/<UDID>).
func Load(dir string) (*Phone, error) {
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotPhone, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("phone: %w", err)
	}
	p := &Phone{Dir: dir}
	if _, err := plist.Unmarshal(b, &p.Config); err != nil {
		return nil, fmt.Errorf("phone: parse %s: %w", filepath.Join(dir, ConfigFile), err)
	}
	if p.UDID() == "" {
		return nil, fmt.Errorf("phone: %s: no UniqueDeviceID in identity", filepath.Join(dir, ConfigFile))
	}
	if _, err := p.Profile(); err != nil {
		return nil, fmt.Errorf("phone: %s: %w", dir, err)
	}
	return p, nil
}

// List returns the phones in dir, sorted by UDID. Entries that are not
// phones, and hidden ones (a phone being created is staged in a ".new-…"
// directory), are skipped; a missing dir yields no phones and no error.
func List(dir string) ([]*Phone, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("phone: %w", err)
	}
	var out []*Phone
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p, err := Load(filepath.Join(dir, e.Name()))
		if errors.Is(err, ErrNotPhone) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UDID() < out[j].UDID() })
	return out, nil
}

// Stats summarises a content tree.
type Stats struct {
	Files, Dirs, Symlinks int
	Bytes                 int64
	Domains               int
}

// Stats walks files/ and counts what is there.
func (p *Phone) Stats() (Stats, error) {
	var s Stats
	root := p.FilesDir()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == root {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			s.Symlinks++
		case d.IsDir():
			if filepath.Dir(rel) == "." {
				s.Domains++
			} else {
				s.Dirs++
			}
		default:
			info, err := d.Info()
			if err != nil {
				return err
			}
			s.Files++
			s.Bytes += info.Size()
		}
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("phone: %w", err)
	}
	return s, nil
}
