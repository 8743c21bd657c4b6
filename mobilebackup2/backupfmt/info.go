package backupfmt

import (
	"fmt"
	"time"
)

// InfoApp is one Info.plist Applications entry (format §5.2).
type InfoApp struct {
	ApplicationSINF []byte
	ITunesMetadata  []byte
	PlaceholderIcon []byte // PNG, optional
}

// Info is Info.plist, written by the host before a backup (format §5.2,
// libimobiledevice-client-needs.md §4.4). Keys are written in sorted order as
// idevicebackup2 does; optional empty values are omitted.
type Info struct {
	Applications          map[string]InfoApp
	BuildVersion          string
	DeviceName            string
	DisplayName           string
	GUID                  string // 32 uppercase hex; a data GUID (pymobiledevice3) reads as hex
	ICCID                 string
	IMEI                  string
	MEID                  string
	PhoneNumber           string
	InstalledApplications []string
	LastBackupDate        time.Time
	ProductName           string
	ProductType           string
	ProductVersion        string
	SerialNumber          string
	TargetIdentifier      string
	TargetType            string // "Device"
	UniqueIdentifier      string // UDID uppercased
	IBooksData2           []byte
	ITunesFiles           map[string][]byte
	ITunesSettings        map[string]any
	ITunesVersion         string
	Extra                 map[string]any // unknown keys, kept on write
}

// ParseInfo decodes Info.plist bytes (XML or binary).
func ParseInfo(b []byte) (*Info, error) {
	var m map[string]any
	if err := unmarshalPlist(b, &m); err != nil {
		return nil, fmt.Errorf("backupfmt: Info.plist: %w", err)
	}
	d := &dictReader{what: "Info.plist", m: m}
	in := &Info{
		BuildVersion:          d.str("Build Version"),
		DeviceName:            d.str("Device Name"),
		DisplayName:           d.str("Display Name"),
		GUID:                  d.strOrData("GUID"),
		ICCID:                 d.str("ICCID"),
		IMEI:                  d.str("IMEI"),
		MEID:                  d.str("MEID"),
		PhoneNumber:           d.str("Phone Number"),
		InstalledApplications: d.strings("Installed Applications"),
		LastBackupDate:        d.date("Last Backup Date"),
		ProductName:           d.str("Product Name"),
		ProductType:           d.str("Product Type"),
		ProductVersion:        d.str("Product Version"),
		SerialNumber:          d.str("Serial Number"),
		TargetIdentifier:      d.str("Target Identifier"),
		TargetType:            d.str("Target Type"),
		UniqueIdentifier:      d.str("Unique Identifier"),
		IBooksData2:           d.data("iBooks Data 2"),
		ITunesFiles:           d.dataDict("iTunes Files"),
		ITunesSettings:        d.dict("iTunes Settings"),
		ITunesVersion:         d.str("iTunes Version"),
	}
	if apps := d.dict("Applications"); apps != nil {
		in.Applications = make(map[string]InfoApp, len(apps))
		for id, v := range apps {
			am, ok := v.(map[string]any)
			if !ok {
				d.fail("Applications."+id, v, "dict")
				continue
			}
			ad := &dictReader{what: "Info.plist Applications." + id, m: am}
			in.Applications[id] = InfoApp{
				ApplicationSINF: ad.data("ApplicationSINF"),
				ITunesMetadata:  ad.data("iTunesMetadata"),
				PlaceholderIcon: ad.data("PlaceholderIcon"),
			}
			if ad.err != nil && d.err == nil {
				d.err = ad.err
			}
		}
	}
	in.Extra = d.rest()
	if d.err != nil {
		return nil, d.err
	}
	return in, nil
}

// Marshal encodes in as an XML plist, as idevicebackup2 writes it.
func (in *Info) Marshal() ([]byte, error) {
	w := dictWriter{}
	if in.Applications != nil {
		apps := make(map[string]any, len(in.Applications))
		for id, a := range in.Applications {
			ad := dictWriter{}
			ad.data("ApplicationSINF", a.ApplicationSINF)
			ad.data("iTunesMetadata", a.ITunesMetadata)
			ad.data("PlaceholderIcon", a.PlaceholderIcon)
			apps[id] = map[string]any(ad)
		}
		w["Applications"] = apps
	}
	w.str("Build Version", in.BuildVersion, false)
	w.str("Device Name", in.DeviceName, false)
	w.str("Display Name", in.DisplayName, false)
	w.str("GUID", in.GUID, false)
	w.str("ICCID", in.ICCID, false)
	w.str("IMEI", in.IMEI, false)
	w.str("MEID", in.MEID, false)
	w.str("Phone Number", in.PhoneNumber, false)
	if in.InstalledApplications != nil {
		a := make([]any, len(in.InstalledApplications))
		for i, s := range in.InstalledApplications {
			a[i] = s
		}
		w["Installed Applications"] = a
	}
	w.date("Last Backup Date", in.LastBackupDate)
	w.str("Product Name", in.ProductName, false)
	w.str("Product Type", in.ProductType, false)
	w.str("Product Version", in.ProductVersion, false)
	w.str("Serial Number", in.SerialNumber, false)
	w.str("Target Identifier", in.TargetIdentifier, false)
	w.str("Target Type", in.TargetType, false)
	w.str("Unique Identifier", in.UniqueIdentifier, false)
	w.data("iBooks Data 2", in.IBooksData2)
	if in.ITunesFiles != nil {
		f := make(map[string]any, len(in.ITunesFiles))
		for k, v := range in.ITunesFiles {
			f[k] = v
		}
		w["iTunes Files"] = f
	}
	if in.ITunesSettings != nil {
		w["iTunes Settings"] = in.ITunesSettings
	}
	w.str("iTunes Version", in.ITunesVersion, false)
	w.extra(in.Extra)
	return marshalPlist(map[string]any(w), false)
}

// ReadInfo reads and parses an Info.plist file.
func ReadInfo(path string) (*Info, error) {
	b, err := readMeta(path)
	if err != nil {
		return nil, err
	}
	return ParseInfo(b)
}

// WriteInfo writes in to path atomically (XML plist).
func WriteInfo(path string, in *Info) error {
	b, err := in.Marshal()
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, b)
}
