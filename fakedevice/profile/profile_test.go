package profile

import (
	"crypto/tls"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProfiles(t *testing.T) {
	assert.Equal(t, []string{"ios9", "ios12", "ios14", "ios17", "ios26"}, Names())
	for _, p := range All() {
		t.Run(p.Name, func(t *testing.T) {
			major, _, _ := Version(p.ProductVersion)
			// mobilebackup2-and-backup-format.md §1.3: 300 up to iOS 13, 400 from 14.
			if major < 14 {
				assert.Equal(t, 300, p.DeviceLinkVersion)
			} else {
				assert.Equal(t, 400, p.DeviceLinkVersion)
			}
			// libimobiledevice-client-needs.md §2.5: TLS 1.0 max below iOS 10.
			if major < 10 {
				assert.Equal(t, uint16(tls.VersionTLS10), p.TLSMaxVersion)
				assert.Equal(t, ManifestMBDB, p.Manifest)
			} else {
				assert.Zero(t, p.TLSMaxVersion)
				assert.Equal(t, ManifestDB, p.Manifest)
			}
			assert.Equal(t, p.AtLeast(16, 1), p.PasscodePromptOnBackup)
			assert.Equal(t, p.AtLeast(17, 0), p.FileProviderRemoteError)
			assert.Equal(t, p.AtLeast(18, 1), p.RejectSlashInDomain)
			assert.Equal(t, p.AtLeast(14, 0), p.PurgeDiskSpace)
		})
	}
}

func TestLookup(t *testing.T) {
	for _, n := range []string{"ios17", "17", "iOS 17", "IOS17", ""} {
		p, err := Lookup(n)
		require.NoError(t, err, n)
		assert.Equal(t, "ios17", p.Name)
	}
	_, err := Lookup("ios3")
	assert.ErrorContains(t, err, "profile: unknown profile")
}

func TestIdentityConsistency(t *testing.T) {
	for _, p := range All() {
		id := NewIdentity(p, 42)
		assert.Equal(t, id, NewIdentity(p, 42), "deterministic")
		assert.NotEqual(t, id.UniqueDeviceID, NewIdentity(p, 43).UniqueDeviceID)
		v := p.Values(id)
		if p.LegacyUDID {
			assert.Len(t, id.UniqueDeviceID, 40)
		} else {
			// usb-usbmux-lockdown.md §7.5: CHIPID(8 hex)-ECID(16 hex).
			assert.Equal(t, fmt.Sprintf("%08X-%016X", v["ChipID"], v["UniqueChipID"]), id.UniqueDeviceID)
		}
		assert.Len(t, id.IMEI, 15)
		assert.Len(t, id.SerialNumber, 12)
		for _, k := range []string{"UniqueDeviceID", "ProductType", "ProductVersion", "BuildVersion", "DeviceClass", "WiFiAddress", "DeviceName", "SerialNumber"} {
			assert.NotEmpty(t, v[k], k)
		}
	}
}

func TestVersion(t *testing.T) {
	ma, mi, pa := Version("17.5.1")
	assert.Equal(t, [3]int{17, 5, 1}, [3]int{ma, mi, pa})
	ma, mi, pa = Version("garbage")
	assert.Equal(t, [3]int{0, 0, 0}, [3]int{ma, mi, pa})
}

func FuzzVersion(f *testing.F) {
	f.Add("17.5.1")
	f.Add("9..x")
	f.Fuzz(func(t *testing.T, s string) {
		ma, mi, pa := Version(s)
		assert.GreaterOrEqual(t, min(ma, mi, pa), 0)
	})
}
