package interop

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIdevicebackup2Faults: the faults stored with a phone (ibackup faults)
// reach idevicebackup2 as the failures a real phone would show it
// (issue 10 item 4), and what it leaves behind is caught by ibackup verify.
// Exit statuses are -ErrorCode & 0xFF (libimobiledevice-client-needs.md
// §4.9). stall-after is left out on purpose: 1.3.0 retries a silent
// device forever (§2.7), so only the test timeout would end it.
func TestIdevicebackup2Faults(t *testing.T) {
	t.Parallel()
	faults := []string{"error=208", "passcode-wait", "passcode-wait=1s", "remote-error-file=2", "truncate-file=3", "link-drop-after=100K"}
	var specs []phoneSpec
	for i, f := range faults {
		specs = append(specs, phoneSpec{Seed: 120 + i, Files: 30, Faults: []string{f}, Passcode: "123456"})
	}
	r := newRig(t, specs...)
	byFault := map[string]string{}
	for i, f := range faults {
		byFault[f] = r.udids[i]
	}
	backup := func(t *testing.T, fault string) (string, result) {
		dir := r.sub(t).backupDir(strings.NewReplacer("=", "-").Replace(fault))
		return dir, r.sub(t).run("idevicebackup2", "-u", byFault[fault], "backup", dir)
	}

	t.Run("error=208", func(t *testing.T) {
		_, res := backup(t, "error=208")
		assert.Equal(t, 256-208, res.code, res.out)
		assert.Contains(t, res.out, "Backup Failed (Error Code 208).", res.out)
	})
	t.Run("passcode-wait", func(t *testing.T) {
		// Never entered: the phone gives up with 208 (at once, not after 30 min).
		_, res := backup(t, "passcode-wait")
		assert.Equal(t, 256-208, res.code, res.out)
		assert.Contains(t, res.out, "Backup Failed (Error Code 208).", res.out)
	})
	t.Run("passcode-wait=1s", func(t *testing.T) {
		// Entered after a second: the backup goes on. 1.3.0 does not
		// observe the LocalAuthentication notifications (corrections.md V11).
		dir, res := backup(t, "passcode-wait=1s")
		require.Equal(t, 0, res.code, res.out)
		assert.Contains(t, res.out, "Backup Successful.")
		assertTree(t, readTree(t, r.files(byFault["passcode-wait=1s"])), r.sub(t).extract(dir), "backup vs phone")
	})
	t.Run("remote-error-file=2", func(t *testing.T) {
		_, res := backup(t, "remote-error-file=2")
		assert.Equal(t, 256-104, res.code, res.out)
		assert.Contains(t, res.out, "Backup Failed (Error Code 104).", res.out)
	})
	t.Run("truncate-file=3", func(t *testing.T) {
		// The device says SUCCESS after half a file; the host cannot tell,
		// our verify can.
		dir, res := backup(t, "truncate-file=3")
		require.Equal(t, 0, res.code, res.out)
		assert.Contains(t, res.out, "Backup Successful.")
		v := r.sub(t).run("ibackup", "verify", dir)
		assert.Equal(t, 1, v.code, v.out)
		assert.Contains(t, v.out, "truncated", v.out)
	})
	t.Run("link-drop-after=100K", func(t *testing.T) {
		r := r.sub(t)
		_, res := backup(t, "link-drop-after=100K")
		assert.Equal(t, 255, res.code, res.out)
		assert.Contains(t, res.out, "Backup Aborted.", res.out)
		// The phone comes back like a replugged one and answers again.
		// The daemon detaches and replugs it as soon as the link has died
		// (fakedevice.Farm), which may be a moment after the tool exited;
		// a user's retry is simulated for that moment.
		u := byFault["link-drop-after=100K"]
		deadline := time.Now().Add(10 * time.Second)
		for {
			res = r.run("ideviceinfo", "-u", u, "-k", "ProductVersion")
			if res.code == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond) // the daemon's scan is not observable from here
		}
		assert.Equal(t, 0, res.code, res.out)
		assert.Equal(t, "17.5.1", strings.TrimSpace(res.out))
	})
}

// TestIdevicepairTrustDelay: with trust-delay the phone answers Pair with
// PairingDialogResponsePending until the simulated user taps Trust, which
// idevicepair reports as "accept the trust dialog" (§3.3); a later attempt
// pairs.
func TestIdevicepairTrustDelay(t *testing.T) {
	t.Parallel()
	r := newRig(t, phoneSpec{Seed: 130, Files: 5, Faults: []string{"trust-delay=1s"}})
	res := r.run("idevicepair", "pair")
	assert.Equal(t, 1, res.code, res.out)
	assert.Contains(t, res.out, "Please accept the trust dialog", res.out)
	assert.NoFileExists(t, r.pairRecord(r.udids[0]))
	deadline := time.Now().Add(15 * time.Second)
	for {
		res = r.run("idevicepair", "pair")
		if res.code == 0 || time.Now().After(deadline) {
			break
		}
		require.Contains(t, res.out, "Please accept the trust dialog", res.out)
		time.Sleep(200 * time.Millisecond) // a user retrying; the delay runs in the daemon
	}
	require.Equal(t, 0, res.code, res.out)
	assert.Contains(t, res.out, "SUCCESS: Paired with device "+r.udids[0])
	assert.FileExists(t, r.pairRecord(r.udids[0]))
}
