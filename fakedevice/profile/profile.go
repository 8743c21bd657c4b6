// Package profile describes simulated iPhone models and iOS releases: the
// identity values lockdownd reports and the protocol details that differ
// between iOS versions (DeviceLink version, TLS limits, backup format,
// passcode prompt on backup).
//
// Facts: usb-usbmux-lockdown.md §5.5 and §7.5, mobilebackup2-and-backup-format.md
// §1.3, §2.7, §4–§6, real-device-profile.md, libimobiledevice-client-needs.md §2.5.
package profile

import (
	"crypto/tls"
	"fmt"
	"sort"
	"strings"
)

// ManifestFormat is the on-disk manifest a profile's device writes in a backup.
type ManifestFormat int

const (
	// ManifestDB is the iOS 10+ SQLite Manifest.db (mobilebackup2-and-backup-format.md §5.5).
	ManifestDB ManifestFormat = iota
	// ManifestMBDB is the iOS 5–9 Manifest.mbdb with a flat file layout (§5.7).
	ManifestMBDB
)

// String returns the file name of the manifest.
func (f ManifestFormat) String() string {
	switch f {
	case ManifestDB:
		return "Manifest.db"
	case ManifestMBDB:
		return "Manifest.mbdb"
	default:
		return fmt.Sprintf("ManifestFormat(%d)", int(f))
	}
}

// Profile is one simulated model running one iOS release.
type Profile struct {
	// Name is the short name used on the command line ("ios17").
	Name string
	// Description is a one-line human summary.
	Description string

	// Identity values (usb-usbmux-lockdown.md §7.5).
	ProductType      string // "iPhone14,5"
	ProductVersion   string // "17.5.1"
	BuildVersion     string // "21F90"
	DeviceClass      string // "iPhone"
	HardwareModel    string // "D17AP"
	HardwarePlatform string // "t8110"
	CPUArchitecture  string // "arm64e"
	ModelNumber      string // "MLMT3"
	FirmwareVersion  string // "iBoot-10151.122.1"
	BasebandVersion  string
	ChipID           uint32 // 0x8110
	BoardID          int
	// LegacyUDID makes the UDID the 40-hex form used by devices before the
	// A12 chip; newer devices use CHIPID-ECID (24 hex digits, §7.5).
	LegacyUDID bool

	// DeviceLinkVersion is the major version the device sends in
	// DLMessageVersionExchange: 300 up to iOS 13, 400 from iOS 14 (§1.3).
	DeviceLinkVersion int
	// TLSMaxVersion is the highest TLS version the device's lockdownd
	// negotiates; libimobiledevice caps at TLS 1.0 when ProductVersion < 10
	// (libimobiledevice-client-needs.md §2.5). 0 means no cap.
	TLSMaxVersion uint16
	// PasscodePromptOnBackup is true from iOS 16.1: the device asks for the
	// passcode before a backup and waits up to 30 minutes (§2.7).
	PasscodePromptOnBackup bool
	// Manifest is the backup manifest format.
	Manifest ManifestFormat
	// ManifestVersion is Manifest.plist "Version" ("9.1" on iOS 9, "10.0" later; §5.4, §10.10).
	ManifestVersion string
	// SystemDomainsVersion is Manifest.plist "SystemDomainsVersion" (§5.4).
	SystemDomainsVersion string
	// EncryptedManifestDB is true from iOS 10.2: an encrypted backup also
	// encrypts Manifest.db, and the keybag carries DPWT/DPIC/DPSL (§6.1–§6.3).
	EncryptedManifestDB bool
	// PurgeDiskSpace is true from iOS 14: the device may send DLMessagePurgeDiskSpace (§2.3).
	PurgeDiskSpace bool
	// FileProviderRemoteError is true from iOS 17: the device always fails to
	// upload FileProvider/backup/backup_manifest.db with an I/O error (§8 pitfall 11).
	FileProviderRemoteError bool
	// RejectSlashInDomain is true from iOS 18.1: restore rejects domain names
	// containing "/" with error 205 (§5.6).
	RejectSlashInDomain bool
	// ManifestUserVersion is Manifest.db's PRAGMA user_version (2 on iOS 26, §5.5).
	ManifestUserVersion int
}

// DefaultName is the profile used when none is given: a current iPhone.
const DefaultName = "ios17"

var profiles = map[string]Profile{
	"ios9": {
		Name: "ios9", Description: "iPhone 6s, iOS 9.3.5 (Manifest.mbdb backups, DeviceLink 300, TLS 1.0)",
		ProductType: "iPhone8,1", ProductVersion: "9.3.5", BuildVersion: "13G36", DeviceClass: "iPhone",
		HardwareModel: "N71AP", HardwarePlatform: "s8000", CPUArchitecture: "arm64", ModelNumber: "MKQJ2",
		FirmwareVersion: "iBoot-2817.60.2", BasebandVersion: "4.70.01", ChipID: 0x8000, BoardID: 4,
		LegacyUDID: true, DeviceLinkVersion: 300, TLSMaxVersion: tls.VersionTLS10,
		Manifest: ManifestMBDB, ManifestVersion: "9.1", SystemDomainsVersion: "24.0",
	},
	"ios12": {
		Name: "ios12", Description: "iPhone XS, iOS 12.5.7 (Manifest.db, DeviceLink 300)",
		ProductType: "iPhone11,2", ProductVersion: "12.5.7", BuildVersion: "16H81", DeviceClass: "iPhone",
		HardwareModel: "D321AP", HardwarePlatform: "t8020", CPUArchitecture: "arm64e", ModelNumber: "MT952",
		FirmwareVersion: "iBoot-4513.260.81", BasebandVersion: "6.02.01", ChipID: 0x8020, BoardID: 14,
		DeviceLinkVersion: 300, Manifest: ManifestDB, ManifestVersion: "10.0", SystemDomainsVersion: "24.0",
		EncryptedManifestDB: true, ManifestUserVersion: 2,
	},
	"ios14": {
		Name: "ios14", Description: "iPhone 12, iOS 14.8.1 (DeviceLink 400, PurgeDiskSpace)",
		ProductType: "iPhone13,2", ProductVersion: "14.8.1", BuildVersion: "18H107", DeviceClass: "iPhone",
		HardwareModel: "D53gAP", HardwarePlatform: "t8101", CPUArchitecture: "arm64e", ModelNumber: "MGJ53",
		FirmwareVersion: "iBoot-6723.140.2", BasebandVersion: "1.71.01", ChipID: 0x8101, BoardID: 12,
		DeviceLinkVersion: 400, Manifest: ManifestDB, ManifestVersion: "10.0", SystemDomainsVersion: "24.0",
		EncryptedManifestDB: true, PurgeDiskSpace: true, ManifestUserVersion: 2,
	},
	"ios17": {
		Name: "ios17", Description: "iPhone 13, iOS 17.5.1 (passcode prompt on backup, FileProvider remote error)",
		ProductType: "iPhone14,5", ProductVersion: "17.5.1", BuildVersion: "21F90", DeviceClass: "iPhone",
		HardwareModel: "D17AP", HardwarePlatform: "t8110", CPUArchitecture: "arm64e", ModelNumber: "MLMT3",
		FirmwareVersion: "iBoot-10151.122.1", BasebandVersion: "3.50.03", ChipID: 0x8110, BoardID: 14,
		DeviceLinkVersion: 400, PasscodePromptOnBackup: true, Manifest: ManifestDB, ManifestVersion: "10.0",
		SystemDomainsVersion: "24.0", EncryptedManifestDB: true, PurgeDiskSpace: true,
		FileProviderRemoteError: true, ManifestUserVersion: 2,
	},
	"ios26": {
		Name: "ios26", Description: "iPhone 16, iOS 26.1 (domain-name checks on restore, Manifest.db user_version 2)",
		ProductType: "iPhone17,3", ProductVersion: "26.1", BuildVersion: "23B85", DeviceClass: "iPhone",
		HardwareModel: "D47AP", HardwarePlatform: "t8140", CPUArchitecture: "arm64e", ModelNumber: "MYE73",
		FirmwareVersion: "iBoot-13822.42.2", BasebandVersion: "2.10.02", ChipID: 0x8140, BoardID: 20,
		DeviceLinkVersion: 400, PasscodePromptOnBackup: true, Manifest: ManifestDB, ManifestVersion: "10.0",
		SystemDomainsVersion: "24.0", EncryptedManifestDB: true, PurgeDiskSpace: true,
		FileProviderRemoteError: true, RejectSlashInDomain: true, ManifestUserVersion: 2,
	},
}

// Lookup returns the profile with the given name. Names are case-insensitive
// and "17" or "iOS 17" are accepted for "ios17".
func Lookup(name string) (Profile, error) {
	n := strings.ToLower(strings.ReplaceAll(name, " ", ""))
	if n == "" {
		n = DefaultName
	}
	if !strings.HasPrefix(n, "ios") {
		n = "ios" + n
	}
	p, ok := profiles[n]
	if !ok {
		return Profile{}, fmt.Errorf("profile: unknown profile %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return p, nil
}

// Names lists the known profile names in release order.
func Names() []string {
	out := make([]string, 0, len(profiles))
	for n := range profiles {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return profiles[out[i]].major() < profiles[out[j]].major() })
	return out
}

// All returns every profile in release order.
func All() []Profile {
	var out []Profile
	for _, n := range Names() {
		out = append(out, profiles[n])
	}
	return out
}

func (p Profile) major() int {
	m, _, _ := Version(p.ProductVersion)
	return m
}

// Version splits a dotted ProductVersion into major, minor and patch; missing
// or unparsable parts are 0.
func Version(v string) (major, minor, patch int) {
	var parts [3]int
	for i, s := range strings.SplitN(v, ".", 3) {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
			if n > 1<<20 {
				break
			}
		}
		parts[i] = n
	}
	return parts[0], parts[1], parts[2]
}

// AtLeast reports whether the profile's ProductVersion is at least major.minor.
func (p Profile) AtLeast(major, minor int) bool {
	ma, mi, _ := Version(p.ProductVersion)
	return ma > major || (ma == major && mi >= minor)
}
