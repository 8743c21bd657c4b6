package interop

import (
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConcurrentClients: one daemon, many clients at once, as on a desktop
// where several tools poll the phones: backups of two phones in parallel,
// a second backup of the first phone by our own tool (the phone's sync
// lock, com.apple.itunes.lock_sync, makes one wait for the other;
// libimobiledevice-client-needs.md §4.2 step 9), and lockdown queries and
// device listings in between. Every client must succeed and both
// backups must hold exactly the phones' content. With -race the daemon is
// race-checked under this load too (raceEnabled).
func TestConcurrentClients(t *testing.T) {
	t.Parallel()
	r := newRig(t, phoneSpec{Seed: 150, Files: 30}, phoneSpec{Seed: 151, Files: 30})
	a, b := r.udids[0], r.udids[1]
	// Pair first: clients that find no pair record pair on their own
	// (libimobiledevice-client-needs.md §2.4 step 5), and concurrent
	// first pairings overwrite each other's record in the daemon, after
	// which a client re-reads a record whose HostID is not its own. That
	// race is the clients', and a real phone shows it too.
	for _, u := range r.udids {
		r.mustContain("SUCCESS", "idevicepair", "-u", u, "pair")
	}
	dirA, dirB, ours := r.backupDir("a"), r.backupDir("b"), r.backupDir("ours")
	type job struct {
		name string
		args []string
		want string // in the output
	}
	jobs := []job{
		{"idevicebackup2", []string{"-u", a, "backup", "--full", dirA}, "Backup Successful."},
		{"idevicebackup2", []string{"-u", b, "backup", "--full", dirB}, "Backup Successful."},
		{"ibackup", []string{"backup", "--usbmuxd", r.addr, "-u", a, ours}, "backup complete"},
	}
	for range 3 {
		jobs = append(jobs,
			job{"ideviceinfo", []string{"-u", b, "-k", "ProductVersion"}, "17.5.1"},
			job{"ideviceinfo", []string{"-u", a, "-q", "com.apple.mobile.backup"}, "WillEncrypt: false"},
			job{"idevice_id", []string{"-l"}, b})
	}
	results := make([]result, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = r.exec(j.name, j.args...)
		}()
	}
	wg.Wait()
	for i, j := range jobs {
		what := j.name + " " + strings.Join(j.args, " ")
		require.NoError(t, errs[i], what)
		assert.Equal(t, 0, results[i].code, "%s:\n%s", what, results[i].out)
		assert.Contains(t, results[i].out, j.want, what)
	}
	phoneA := readTree(t, r.files(a))
	assertTree(t, phoneA, r.extract(dirA), "idevicebackup2 backup of A")
	assertTree(t, readTree(t, r.files(b)), r.extract(dirB), "idevicebackup2 backup of B")
	assertTree(t, phoneA, r.extract(ours), "ibackup backup of A")
}
