package lockdownd

import (
	"bytes"
	"maps"
)

// ExampleValues returns the synthetic root-domain values of
// usb-usbmux-lockdown.md §7.5 (a simulated iPhone 13 on iOS 17.5.1) for the
// given UDID (24-char form "XXXXXXXX-XXXXXXXXXXXXXXXX" or 40 hex digits).
// Callers adjust what their profile needs. DevicePublicKey and
// PasswordProtected are supplied by the server.
func ExampleValues(udid string) map[string]any {
	return map[string]any{
		"ActivationState":                 "Activated",
		"ActivationStateAcknowledged":     true,
		"BasebandActivationTicketVersion": "V2",
		"BasebandCertId":                  uint64(2315222105),
		"BasebandChipID":                  uint64(12259521),
		"BasebandKeyHashInformation": map[string]any{
			"AKeyStatus": uint64(2), "SKeyHash": bytes.Repeat([]byte{0xab}, 48), "SKeyStatus": uint64(0),
		},
		"BasebandMasterKeyHash":                "8A7B6C5D4E3F20118A7B6C5D4E3F20118A7B6C5D4E3F20118A7B6C5D4E3F20118A7B6C5D4E3F20118A7B6C5D4E3F2011",
		"BasebandRegionSKU":                    bytes.Repeat([]byte{0}, 64),
		"BasebandSerialNumber":                 []byte{0x1c, 0x2d, 0x3e, 0x4f, 0x50, 0x61, 0x72, 0x83, 0x94, 0xa5, 0xb6, 0xc7},
		"BasebandStatus":                       "BBInfoAvailable",
		"BasebandVersion":                      "3.50.03",
		"BluetoothAddress":                     "a4:c3:f0:11:22:34",
		"BoardId":                              uint64(14),
		"BrickState":                           false,
		"BuildVersion":                         "21F90",
		"CPUArchitecture":                      "arm64e",
		"CarrierBundleInfoArray":               []any{},
		"CertID":                               uint64(2315222105),
		"ChipID":                               uint64(33040),
		"ChipSerialNo":                         bytes.Repeat([]byte{0x5a}, 12),
		"DeviceClass":                          "iPhone",
		"DeviceColor":                          "1",
		"DeviceName":                           "Test iPhone",
		"DieID":                                uint64(7404573493421084702),
		"EthernetAddress":                      "a4:c3:f0:11:22:35",
		"FirmwareVersion":                      "iBoot-10151.122.1",
		"FusingStatus":                         uint64(3),
		"HardwareModel":                        "D17AP",
		"HardwarePlatform":                     "t8110",
		"HasSiDP":                              true,
		"HostAttached":                         true,
		"InternationalMobileEquipmentIdentity": "356789012345678",
		"MLBSerialNumber":                      "F2L123456789ABCDE",
		"MobileEquipmentIdentifier":            "35678901234567",
		"MobileSubscriberCountryCode":          "310",
		"MobileSubscriberNetworkCode":          "260",
		"ModelNumber":                          "MLMT3",
		"NonVolatileRAM": map[string]any{
			"auto-boot": []byte("true"), "backlight-level": []byte("1527"), "boot-args": "",
		},
		"PairRecordProtectionClass":     uint64(4),
		"PartitionType":                 "GUID_partition_scheme",
		"PkHash":                        bytes.Repeat([]byte{0x11}, 32),
		"ProductName":                   "iPhone OS",
		"ProductType":                   "iPhone14,5",
		"ProductVersion":                "17.5.1",
		"ProductionSOC":                 true,
		"ProtocolVersion":               "2",
		"ProximitySensorCalibration":    bytes.Repeat([]byte{0x22}, 144),
		"RegionInfo":                    "LL/A",
		"SBLockdownEverRegisteredKey":   true,
		"SIMStatus":                     "kCTSIMSupportSIMStatusNotInserted",
		"SIMTrayStatus":                 "kCTSIMSupportSIMTrayInsertedNoSIM",
		"SerialNumber":                  "F2LZX0ABCDEF",
		"SoftwareBehavior":              bytes.Repeat([]byte{0}, 16),
		"SoftwareBundleVersion":         "",
		"SupportedDeviceFamilies":       []any{uint64(1)},
		"TelephonyCapability":           true,
		"TimeIntervalSince1970":         1718000000.25,
		"TimeZone":                      "Europe/Berlin",
		"TimeZoneOffsetFromUTC":         7200.0,
		"TrustedHostAttached":           true,
		"UniqueChipID":                  uint64(8493986286823800),
		"UniqueDeviceID":                udid,
		"UseRaptorCerts":                true,
		"Uses24HourClock":               true,
		"WiFiAddress":                   "a4:c3:f0:11:22:33",
		"WirelessBoardSerialNumber":     "0A1B2C3D4E5F6071",
		"kCTPostponementInfoPRIVersion": "0.1.199",
		"kCTPostponementInfoPRLName":    uint64(0),
		"kCTPostponementInfoServiceProvisioningState": false,
		"kCTPostponementStatus":                       "Ready",
	}
}

// ExampleDomains returns the value domains hosts read (§5.7,
// libimobiledevice-client-needs.md §4.10).
func ExampleDomains() map[string]map[string]any {
	return map[string]map[string]any{
		"com.apple.mobile.backup": {"WillEncrypt": false},
		"com.apple.mobile.iTunes": {
			"MinITunesVersion": "12.0", "MinMacOSVersion": "10.15", "iTunesSetupComplete": true,
		},
		"com.apple.iTunes":                   {},
		"com.apple.international":            {"Language": "en", "Locale": "en_US"},
		"com.apple.mobile.wireless_lockdown": {"EnableWifiConnections": false},
		"com.apple.mobile.battery":           {"BatteryCurrentCapacity": uint64(87), "BatteryIsCharging": true},
		"com.apple.disk_usage":               {"TotalDiskCapacity": uint64(128000000000), "AmountDataAvailable": uint64(64000000000)},
	}
}

// cloneDomains deep-copies the domains map one level down, so SetValue on
// the server never writes into the caller's maps.
func cloneDomains(in map[string]map[string]any) map[string]map[string]any {
	out := make(map[string]map[string]any, len(in))
	for k, v := range in {
		out[k] = maps.Clone(v)
		if out[k] == nil {
			out[k] = map[string]any{}
		}
	}
	return out
}
