package profile

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// Identity is the per-phone part of the identity values: everything that is
// unique to one handset rather than to a model. It is derived from a seed so
// that the same seed always gives the same phone.
type Identity struct {
	UniqueDeviceID string `plist:"UniqueDeviceID"`
	UniqueChipID   uint64 `plist:"UniqueChipID"` // ECID
	SerialNumber   string `plist:"SerialNumber"`
	DeviceName     string `plist:"DeviceName"`
	WiFiAddress    string `plist:"WiFiAddress"`
	BluetoothAddr  string `plist:"BluetoothAddress"`
	EthernetAddr   string `plist:"EthernetAddress"`
	IMEI           string `plist:"InternationalMobileEquipmentIdentity"`
	MEID           string `plist:"MobileEquipmentIdentifier"`
	MLBSerial      string `plist:"MLBSerialNumber"`
	DieID          uint64 `plist:"DieID"`
	WirelessBoard  string `plist:"WirelessBoardSerialNumber"`
}

// seedBytes expands a seed into n deterministic bytes.
func seedBytes(seed int64, label string, n int) []byte {
	var out []byte
	for i := 0; len(out) < n; i++ {
		h := sha256.Sum256([]byte(fmt.Sprintf("ibackup-fake-identity/%d/%s/%d", seed, label, i)))
		out = append(out, h[:]...)
	}
	return out[:n]
}

const serialAlphabet = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"

func fromAlphabet(b []byte, alphabet string) string {
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte(alphabet[int(c)%len(alphabet)])
	}
	return sb.String()
}

func digits(b []byte) string { return fromAlphabet(b, "0123456789") }

// luhn appends the Luhn check digit an IMEI carries.
func luhn(s string) string {
	sum := 0
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if (len(s)-1-i)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return s + string(rune('0'+(10-sum%10)%10))
}

func mac(b []byte) string {
	// Apple OUI a4:c3:f0 as in the facts' example values (§7.5).
	return fmt.Sprintf("a4:c3:f0:%02x:%02x:%02x", b[0], b[1], b[2])
}

// NewIdentity derives a handset identity for profile p from seed. The UDID
// follows the consistency rule of usb-usbmux-lockdown.md §7.5: the 24-char
// form is ChipID as 8 hex digits, a hyphen, and the ECID as 16 hex digits;
// pre-A12 models (LegacyUDID) use 40 hex digits.
func NewIdentity(p Profile, seed int64) Identity {
	b := seedBytes(seed, "ecid", 8)
	// Real ECIDs fit in 52–56 bits; keep the top byte zero and the next one small.
	ecid := binary.BigEndian.Uint64(b) & 0x001FFFFFFFFFFFFF
	if ecid == 0 {
		ecid = 1
	}
	id := Identity{UniqueChipID: ecid}
	if p.LegacyUDID {
		h := sha1.Sum(seedBytes(seed, "udid", 32))
		id.UniqueDeviceID = hex.EncodeToString(h[:])
	} else {
		id.UniqueDeviceID = fmt.Sprintf("%08X-%016X", p.ChipID, ecid)
	}
	id.SerialNumber = fromAlphabet(seedBytes(seed, "serial", 12), serialAlphabet)
	id.MLBSerial = fromAlphabet(seedBytes(seed, "mlb", 17), serialAlphabet)
	id.DeviceName = "Test iPhone"
	m := seedBytes(seed, "mac", 3)
	id.WiFiAddress = mac(m)
	m[2]++
	id.BluetoothAddr = mac(m)
	m[2]++
	id.EthernetAddr = mac(m)
	id.IMEI = luhn("35" + digits(seedBytes(seed, "imei", 12)))
	id.MEID = id.IMEI[:14]
	id.DieID = binary.BigEndian.Uint64(seedBytes(seed, "die", 8)) >> 1
	id.WirelessBoard = strings.ToUpper(hex.EncodeToString(seedBytes(seed, "wb", 8)))
	return id
}

// Values returns the root-domain lockdown values (usb-usbmux-lockdown.md
// §7.5) for a phone of profile p with identity id. DevicePublicKey,
// PasswordProtected and the time values are left to lockdownd, which owns
// the key pair and the lock state. The map is new on every call.
func (p Profile) Values(id Identity) map[string]any {
	data := func(label string, n int) []byte { return seedBytes(int64(id.UniqueChipID), label, n) }
	v := map[string]any{
		"ActivationState":                 "Activated",
		"ActivationStateAcknowledged":     true,
		"BasebandActivationTicketVersion": "V2",
		"BasebandCertId":                  2315222105,
		"BasebandChipID":                  12259521,
		"BasebandKeyHashInformation": map[string]any{
			"AKeyStatus": 2, "SKeyHash": data("skey", 48), "SKeyStatus": 0,
		},
		"BasebandMasterKeyHash":                strings.ToUpper(hex.EncodeToString(data("bbmk", 48))),
		"BasebandRegionSKU":                    data("sku", 64),
		"BasebandSerialNumber":                 data("bbsn", 12),
		"BasebandStatus":                       "BBInfoAvailable",
		"BasebandVersion":                      p.BasebandVersion,
		"BluetoothAddress":                     id.BluetoothAddr,
		"BoardId":                              p.BoardID,
		"BrickState":                           false,
		"BuildVersion":                         p.BuildVersion,
		"CPUArchitecture":                      p.CPUArchitecture,
		"CarrierBundleInfoArray":               []any{},
		"CertID":                               2315222105,
		"ChipID":                               int(p.ChipID),
		"ChipSerialNo":                         data("csn", 12),
		"DeviceClass":                          p.DeviceClass,
		"DeviceColor":                          "1",
		"DeviceName":                           id.DeviceName,
		"DieID":                                id.DieID,
		"EthernetAddress":                      id.EthernetAddr,
		"FirmwareVersion":                      p.FirmwareVersion,
		"FusingStatus":                         3,
		"HardwareModel":                        p.HardwareModel,
		"HardwarePlatform":                     p.HardwarePlatform,
		"HasSiDP":                              true,
		"HostAttached":                         true,
		"InternationalMobileEquipmentIdentity": id.IMEI,
		"MLBSerialNumber":                      id.MLBSerial,
		"MobileEquipmentIdentifier":            id.MEID,
		"MobileSubscriberCountryCode":          "310",
		"MobileSubscriberNetworkCode":          "260",
		"ModelNumber":                          p.ModelNumber,
		"NonVolatileRAM": map[string]any{
			"auto-boot": []byte("true"), "backlight-level": []byte("1527"), "boot-args": "",
		},
		"PairRecordProtectionClass":     4,
		"PartitionType":                 "GUID_partition_scheme",
		"PkHash":                        data("pk", 32),
		"ProductName":                   "iPhone OS",
		"ProductType":                   p.ProductType,
		"ProductVersion":                p.ProductVersion,
		"ProductionSOC":                 true,
		"ProtocolVersion":               "2",
		"ProximitySensorCalibration":    data("prox", 144),
		"RegionInfo":                    "LL/A",
		"SBLockdownEverRegisteredKey":   true,
		"SIMStatus":                     "kCTSIMSupportSIMStatusNotInserted",
		"SIMTrayStatus":                 "kCTSIMSupportSIMTrayInsertedNoSIM",
		"SerialNumber":                  id.SerialNumber,
		"SoftwareBehavior":              data("sb", 16),
		"SoftwareBundleVersion":         "",
		"SupportedDeviceFamilies":       []any{1},
		"TelephonyCapability":           true,
		"TimeZone":                      "Europe/Berlin",
		"TimeZoneOffsetFromUTC":         3600.0,
		"TrustedHostAttached":           true,
		"UniqueChipID":                  id.UniqueChipID,
		"UniqueDeviceID":                id.UniqueDeviceID,
		"UseRaptorCerts":                true,
		"Uses24HourClock":               true,
		"WiFiAddress":                   id.WiFiAddress,
		"WirelessBoardSerialNumber":     id.WirelessBoard,
		"kCTPostponementInfoPRIVersion": "0.1.199",
		"kCTPostponementInfoPRLName":    0,
		"kCTPostponementInfoServiceProvisioningState": false,
		"kCTPostponementStatus":                       "Ready",
	}
	return v
}

// Domains returns the per-domain lockdown values of a fresh phone
// (usb-usbmux-lockdown.md §5.7): the backup domain with WillEncrypt false.
func (p Profile) Domains() map[string]map[string]any {
	return map[string]map[string]any{
		"com.apple.mobile.backup":            {"WillEncrypt": false, "RequiresEncrypt": false},
		"com.apple.mobile.data_sync":         {},
		"com.apple.mobile.wireless_lockdown": {"EnableWifiConnections": false},
		"com.apple.disk_usage": {
			"TotalDiskCapacity": int64(128_000_000_000), "TotalDataCapacity": int64(110_000_000_000),
			"TotalDataAvailable": int64(64_000_000_000), "AmountDataAvailable": int64(64_000_000_000),
		},
		"com.apple.mobile.battery":        {"BatteryCurrentCapacity": 87, "BatteryIsCharging": true},
		"com.apple.international":         {"Language": "en", "Locale": "en_US"},
		"com.apple.mobile.iTunes":         {},
		"com.apple.Accessibility":         {},
		"com.apple.MobileDeviceCrashCopy": {},
	}
}
