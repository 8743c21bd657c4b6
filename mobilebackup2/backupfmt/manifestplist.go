package backupfmt

import (
	"fmt"
	"time"
)

// Manifest.plist Version values (format §5.4, §5.7).
const (
	ManifestVersionDB   = "10.0" // Manifest.db era
	ManifestVersionMBDB = "9.1"  // Manifest.mbdb era
)

// Lockdown is the Manifest.plist Lockdown dict: device identity strings and
// per-domain sub-dicts (format §5.4, real-device-profile.md).
type Lockdown struct {
	ProductVersion string
	BuildVersion   string
	ProductType    string
	DeviceName     string
	SerialNumber   string
	UniqueDeviceID string
	Extra          map[string]any // e.g. com.apple.* sub-dicts, kept on write
}

// ManifestApp is one Manifest.plist Applications entry.
type ManifestApp struct {
	CFBundleIdentifier    string
	CFBundleVersion       string
	Path                  string
	ContainerContentClass string
	Extra                 map[string]any
}

// Manifest is Manifest.plist, the backup properties written by the device
// (binary, format §5.4). BackupKeyBag is present even when not encrypted;
// ManifestKey only when encrypted (4-byte LE class + wrapped key, §6.3).
type Manifest struct {
	Version                string
	SystemDomainsVersion   string
	Date                   time.Time
	IsEncrypted            bool
	WasPasscodeSet         bool
	BackupKeyBag           []byte
	ManifestKey            []byte
	Lockdown               Lockdown
	Applications           map[string]ManifestApp
	RequiredProductVersion string
	Extra                  map[string]any // AppleIDs, account keys, unknown keys
}

// ParseManifest decodes Manifest.plist bytes (binary or XML).
func ParseManifest(b []byte) (*Manifest, error) {
	var m map[string]any
	if err := unmarshalPlist(b, &m); err != nil {
		return nil, fmt.Errorf("backupfmt: Manifest.plist: %w", err)
	}
	d := &dictReader{what: "Manifest.plist", m: m}
	mf := &Manifest{
		Version:                d.strOrNumber("Version"),
		SystemDomainsVersion:   d.strOrNumber("SystemDomainsVersion"),
		Date:                   d.date("Date"),
		IsEncrypted:            d.boolean("IsEncrypted"),
		WasPasscodeSet:         d.boolean("WasPasscodeSet"),
		BackupKeyBag:           d.data("BackupKeyBag"),
		ManifestKey:            d.data("ManifestKey"),
		RequiredProductVersion: d.str("RequiredProductVersion"),
	}
	if lm := d.dict("Lockdown"); lm != nil {
		ld := &dictReader{what: "Manifest.plist Lockdown", m: lm}
		mf.Lockdown = Lockdown{
			ProductVersion: ld.str("ProductVersion"),
			BuildVersion:   ld.str("BuildVersion"),
			ProductType:    ld.str("ProductType"),
			DeviceName:     ld.str("DeviceName"),
			SerialNumber:   ld.str("SerialNumber"),
			UniqueDeviceID: ld.str("UniqueDeviceID"),
		}
		mf.Lockdown.Extra = ld.rest()
		if ld.err != nil && d.err == nil {
			d.err = ld.err
		}
	}
	if apps := d.dict("Applications"); apps != nil {
		mf.Applications = make(map[string]ManifestApp, len(apps))
		for id, v := range apps {
			am, ok := v.(map[string]any)
			if !ok {
				d.fail("Applications."+id, v, "dict")
				continue
			}
			ad := &dictReader{what: "Manifest.plist Applications." + id, m: am}
			app := ManifestApp{
				CFBundleIdentifier:    ad.str("CFBundleIdentifier"),
				CFBundleVersion:       ad.str("CFBundleVersion"),
				Path:                  ad.str("Path"),
				ContainerContentClass: ad.str("ContainerContentClass"),
			}
			app.Extra = ad.rest()
			mf.Applications[id] = app
			if ad.err != nil && d.err == nil {
				d.err = ad.err
			}
		}
	}
	mf.Extra = d.rest()
	if d.err != nil {
		return nil, d.err
	}
	return mf, nil
}

// Marshal encodes m as a binary plist, as the device writes it.
func (m *Manifest) Marshal() ([]byte, error) {
	w := dictWriter{}
	w.str("Version", m.Version, true)
	w.str("SystemDomainsVersion", m.SystemDomainsVersion, false)
	w.date("Date", m.Date)
	w["IsEncrypted"] = m.IsEncrypted
	w["WasPasscodeSet"] = m.WasPasscodeSet
	w.data("BackupKeyBag", m.BackupKeyBag)
	w.data("ManifestKey", m.ManifestKey)
	w.str("RequiredProductVersion", m.RequiredProductVersion, false)
	ld := dictWriter{}
	ld.str("ProductVersion", m.Lockdown.ProductVersion, false)
	ld.str("BuildVersion", m.Lockdown.BuildVersion, false)
	ld.str("ProductType", m.Lockdown.ProductType, false)
	ld.str("DeviceName", m.Lockdown.DeviceName, false)
	ld.str("SerialNumber", m.Lockdown.SerialNumber, false)
	ld.str("UniqueDeviceID", m.Lockdown.UniqueDeviceID, false)
	ld.extra(m.Lockdown.Extra)
	w["Lockdown"] = map[string]any(ld)
	apps := make(map[string]any, len(m.Applications))
	for id, a := range m.Applications {
		ad := dictWriter{}
		ad.str("CFBundleIdentifier", a.CFBundleIdentifier, false)
		ad.str("CFBundleVersion", a.CFBundleVersion, false)
		ad.str("Path", a.Path, false)
		ad.str("ContainerContentClass", a.ContainerContentClass, false)
		ad.extra(a.Extra)
		apps[id] = map[string]any(ad)
	}
	w["Applications"] = apps
	w.extra(m.Extra)
	return marshalPlist(map[string]any(w), true)
}

// ReadManifest reads and parses a Manifest.plist file. A zero-length file
// gives an error wrapping ErrEmpty (format §8 pitfall 5).
func ReadManifest(path string) (*Manifest, error) {
	b, err := readMeta(path)
	if err != nil {
		return nil, err
	}
	return ParseManifest(b)
}

// WriteManifest writes m to path atomically (binary plist).
func WriteManifest(path string, m *Manifest) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, b)
}
