package interop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"howett.net/plist"
)

// deviceConfig is the part of a phone's device.plist the tests check
// values against.
type deviceConfig struct {
	Profile  string
	Identity map[string]any
}

func (r *rig) deviceConfig(udid string) deviceConfig {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(r.phones, udid, "device.plist"))
	require.NoError(r.t, err)
	var c deviceConfig
	_, err = plist.Unmarshal(b, &c)
	require.NoError(r.t, err)
	return c
}

// pairRecord is where the daemon keeps the host's pair record of udid
// (--pair-dir defaults to <fake-dir>/.lockdown).
func (r *rig) pairRecord(udid string) string {
	return filepath.Join(r.phones, ".lockdown", udid+".plist")
}

// TestIdeviceID: idevice_id lists every phone, as USB, and reads the
// device name over a plaintext lockdown connection
// (libimobiledevice-client-needs.md §3.1).
func TestIdeviceID(t *testing.T) {
	t.Parallel()
	r := newRig(t, phoneSpec{Seed: 21, Files: 10, Name: "Ada's iPhone"}, phoneSpec{Seed: 22, Files: 10, Name: "Bob's iPhone"})

	assert.ElementsMatch(t, r.udids, strings.Fields(r.must("idevice_id", "-l")))
	all := r.must("idevice_id")
	for _, u := range r.udids {
		assert.Contains(t, all, u+" (USB)")
	}
	assert.Equal(t, "Ada's iPhone", strings.TrimSpace(r.must("idevice_id", r.udids[0])))
	assert.Equal(t, "Bob's iPhone", strings.TrimSpace(r.must("idevice_id", r.udids[1])))
	for _, u := range r.udids {
		assert.NoFileExists(t, r.pairRecord(u), "idevice_id must not pair")
	}
}

// TestIdeviceinfo: the full root domain, single keys, a domain, and the
// simple (unpaired) mode, for a phone of every profile
// (libimobiledevice-client-needs.md §3.2, §4.10). The first handshake pairs
// automatically (§2.4 step 5).
func TestIdeviceinfo(t *testing.T) {
	t.Parallel()
	profiles := map[string]string{ // profile -> ProductVersion (ibackup fake new --help)
		"ios9": "9.3.5", "ios12": "12.5.7", "ios14": "14.8.1", "ios17": "17.5.1", "ios26": "26.1",
	}
	var specs []phoneSpec
	names := []string{"ios9", "ios12", "ios14", "ios17", "ios26"}
	for i, p := range names {
		specs = append(specs, phoneSpec{Seed: 30 + i, Files: 5, Profile: p})
	}
	r := newRig(t, specs...)
	for i, u := range r.udids {
		prof := names[i]
		t.Run(prof, func(t *testing.T) {
			r := r.sub(t)
			cfg := r.deviceConfig(u)
			require.Equal(t, prof, cfg.Profile)

			full := r.must("ideviceinfo", "-u", u)
			assert.FileExists(t, r.pairRecord(u), "the handshake pairs and saves through the daemon")
			for _, k := range []string{"UniqueDeviceID", "SerialNumber", "DeviceName", "WiFiAddress"} {
				assert.Contains(t, full, "\n"+k+": "+cfg.Identity[k].(string)+"\n", k)
			}
			// idevicebackup2 aborts on a missing one of these (§6 item 9).
			for _, k := range []string{"BuildVersion", "ProductType", "ProductVersion: " + profiles[prof]} {
				assert.Contains(t, full, "\n"+k, k)
			}
			assert.Equal(t, profiles[prof], strings.TrimSpace(r.must("ideviceinfo", "-u", u, "-k", "ProductVersion")))
			assert.Equal(t, u, strings.TrimSpace(r.must("ideviceinfo", "-u", u, "-k", "UniqueDeviceID")))

			backup := r.must("ideviceinfo", "-u", u, "-q", "com.apple.mobile.backup")
			assert.Contains(t, backup, "WillEncrypt: false")
			assert.Equal(t, "false", strings.TrimSpace(r.must("ideviceinfo", "-u", u, "-q", "com.apple.mobile.backup", "-k", "WillEncrypt")))

			// -s: plaintext GetValue, no session (§3.2).
			assert.Equal(t, profiles[prof], strings.TrimSpace(r.must("ideviceinfo", "-u", u, "-s", "-k", "ProductVersion")))
			// -x: the same values as an XML plist.
			var vals map[string]any
			_, err := plist.Unmarshal([]byte(r.must("ideviceinfo", "-u", u, "-x")), &vals)
			require.NoError(t, err)
			assert.Equal(t, u, vals["UniqueDeviceID"])
			assert.IsType(t, []byte(nil), vals["DevicePublicKey"], "DevicePublicKey is data (§2.6)")
		})
	}
}

// TestIdevicepair: pair, validate and unpair, and that unpair is real on
// both sides: the daemon deletes the record and the phone forgets the host,
// so the old record no longer opens a session (§3.3).
func TestIdevicepair(t *testing.T) {
	t.Parallel()
	r := newRig(t, phoneSpec{Seed: 40, Files: 5})
	u := r.udids[0]

	assert.Contains(t, r.must("idevicepair", "systembuid"), "-") // a UUID from the daemon (ReadBUID)
	r.mustContain("SUCCESS: Paired with device "+u, "idevicepair", "pair")
	require.FileExists(t, r.pairRecord(u))
	rec := readPlist(t, r.pairRecord(u))
	for _, k := range []string{"DeviceCertificate", "HostCertificate", "RootCertificate", "HostPrivateKey", "RootPrivateKey", "EscrowBag"} {
		assert.IsType(t, []byte(nil), rec[k], "pair record key %s", k)
	}
	assert.Contains(t, r.must("idevicepair", "hostid"), rec["HostID"].(string))
	r.mustContain("SUCCESS: Validated pairing with device "+u, "idevicepair", "validate")
	// Our own tool uses the record idevicepair stored through the daemon.
	r.mustContain("SUCCESS", "ibackup", "validate", "--usbmuxd", r.addr)

	old, err := os.ReadFile(r.pairRecord(u))
	require.NoError(t, err)
	r.mustContain("SUCCESS: Unpaired with device "+u, "idevicepair", "unpair")
	assert.NoFileExists(t, r.pairRecord(u), "DeletePairRecord after Unpair")

	// Put the old record back: the phone no longer knows that host.
	require.NoError(t, os.WriteFile(r.pairRecord(u), old, 0o600))
	res := r.run("idevicepair", "validate")
	assert.NotEqual(t, 0, res.code, res.out)
	assert.Contains(t, res.out, "is not paired with this host", res.out)
	require.NoError(t, os.Remove(r.pairRecord(u)))

	// Without a record the handshake pairs again by itself.
	r.mustContain("SUCCESS: Validated pairing with device "+u, "idevicepair", "validate")
	assert.FileExists(t, r.pairRecord(u))
}

// TestIdevicepairFaults: the trust faults stored with a phone reach a
// foreign tool as the lockdown errors it knows (§3.3).
func TestIdevicepairFaults(t *testing.T) {
	t.Parallel()
	r := newRig(t,
		phoneSpec{Seed: 41, Files: 5, Faults: []string{"deny-trust"}},
		phoneSpec{Seed: 42, Files: 5, Faults: []string{"locked"}})

	res := r.run("idevicepair", "-u", r.udids[0], "pair")
	assert.Equal(t, 1, res.code, res.out)
	assert.Contains(t, res.out, "user denied the trust dialog", res.out)
	assert.NoFileExists(t, r.pairRecord(r.udids[0]))

	res = r.run("idevicepair", "-u", r.udids[1], "pair")
	assert.Equal(t, 1, res.code, res.out)
	assert.Contains(t, res.out, "passcode is set", res.out)
	assert.NoFileExists(t, r.pairRecord(r.udids[1]))
}

// readPlist decodes a plist file into a map.
func readPlist(t *testing.T, p string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	var m map[string]any
	_, err = plist.Unmarshal(b, &m)
	require.NoError(t, err, p)
	return m
}
