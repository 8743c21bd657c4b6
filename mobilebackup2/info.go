package mobilebackup2

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
)

// App is one user app as installation_proxy Browse reports it
// (ApplicationType=User; client-needs §4.4).
type App struct {
	BundleID string
	// SINF and ITunesMetadata are ApplicationSINF / iTunesMetadata; apps
	// without both are listed only under Installed Applications.
	SINF, ITunesMetadata []byte
	// Icon is springboardservices getIconPNGData, optional.
	Icon []byte
}

// InfoInput is what the host gathers from the phone before a backup to build
// Info.plist (mobilebackup2-and-backup-format.md §5.2, client-needs §4.4).
// The caller fills it from lockdown, installation_proxy and AFC.
type InfoInput struct {
	// Values is the lockdown root domain (GetValue without domain and key).
	// BuildVersion, DeviceName, ProductType, ProductVersion and SerialNumber
	// are required.
	Values map[string]any
	// ITunesSettings is the com.apple.iTunes domain (nil = empty dict).
	ITunesSettings map[string]any
	// MinITunesVersion is com.apple.mobile.iTunes/MinITunesVersion; "" uses
	// the fallback "10.0.1" (pitfall 15).
	MinITunesVersion string
	// Apps are the user apps from installation_proxy Browse.
	Apps []App
	// ITunesFiles are the AFC files /iTunes_Control/iTunes/<name> that exist
	// and are not empty.
	ITunesFiles map[string][]byte
	// IBooksData2 is AFC /Books/iBooksData2.plist when present.
	IBooksData2 []byte
	// Now is the Last Backup Date (zero = time.Now()).
	Now time.Time
}

// BuildInfo builds Info.plist for target (the UDID folder name) the way
// idevicebackup2 does (client-needs §4.4).
func BuildInfo(target string, in *InfoInput) (*backupfmt.Info, error) {
	if in == nil {
		return nil, fmt.Errorf("mobilebackup2: Info.plist: no device information given")
	}
	str := func(k string) string { s, _ := in.Values[k].(string); return s }
	var missing []string
	for _, k := range []string{"BuildVersion", "DeviceName", "ProductType", "ProductVersion", "SerialNumber"} {
		if str(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("mobilebackup2: Info.plist: lockdown values missing: %s", strings.Join(missing, ", "))
	}
	var g [16]byte
	if _, err := rand.Read(g[:]); err != nil {
		return nil, fmt.Errorf("mobilebackup2: Info.plist GUID: %w", err)
	}
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	info := &backupfmt.Info{
		BuildVersion:     str("BuildVersion"),
		DeviceName:       str("DeviceName"),
		DisplayName:      str("DeviceName"),
		GUID:             strings.ToUpper(hex.EncodeToString(g[:])),
		ICCID:            str("IntegratedCircuitCardIdentity"),
		IMEI:             str("InternationalMobileEquipmentIdentity"),
		MEID:             str("MobileEquipmentIdentifier"),
		PhoneNumber:      str("PhoneNumber"),
		LastBackupDate:   now.UTC().Truncate(time.Second),
		ProductType:      str("ProductType"),
		ProductVersion:   str("ProductVersion"),
		SerialNumber:     str("SerialNumber"),
		TargetIdentifier: target,
		TargetType:       "Device",
		UniqueIdentifier: strings.ToUpper(target),
		IBooksData2:      in.IBooksData2,
		ITunesFiles:      in.ITunesFiles,
		ITunesSettings:   in.ITunesSettings,
		ITunesVersion:    in.MinITunesVersion,
		Applications:     map[string]backupfmt.InfoApp{},
	}
	if info.ITunesVersion == "" {
		info.ITunesVersion = "10.0.1"
	}
	if info.ITunesSettings == nil {
		info.ITunesSettings = map[string]any{}
	}
	for _, a := range in.Apps {
		info.InstalledApplications = append(info.InstalledApplications, a.BundleID)
		if len(a.SINF) > 0 && len(a.ITunesMetadata) > 0 {
			info.Applications[a.BundleID] = backupfmt.InfoApp{ApplicationSINF: a.SINF, ITunesMetadata: a.ITunesMetadata, PlaceholderIcon: a.Icon}
		}
	}
	sort.Strings(info.InstalledApplications)
	if info.InstalledApplications == nil {
		info.InstalledApplications = []string{}
	}
	return info, nil
}
