package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Time limits for the processes a test starts. Generous against the 2-core
// CI machine; a healthy run needs a small fraction of them.
const (
	toolTimeout   = 90 * time.Second // one ibackup or Debian tool run
	daemonStartup = 20 * time.Second // until idevice_id -l lists every phone
	daemonStop    = 15 * time.Second // SIGINT until exit, then SIGKILL
)

// phoneSpec is one simulated phone to create with `ibackup fake new`.
type phoneSpec struct {
	Seed    int
	Files   int      // default 50
	Size    string   // default "150K"
	Profile string   // default ios17
	Name    string   // device name (default the CLI's)
	Faults  []string // faults stored with the phone (ibackup faults)
	// Passcode gives the phone a passcode (iOS 16.1+ profiles then ask
	// for it before a backup).
	Passcode string
}

// rig is one test's world: a phones directory, the ibackup usbmuxd daemon
// serving it, and a scratch directory for backups.
type rig struct {
	t      *testing.T
	dir    string   // scratch root (backups and the like go below it)
	phones string   // --fake-dir of the daemon
	addr   string   // USBMUXD_SOCKET_ADDRESS value, "UNIX:<socket>"
	udids  []string // the created phones, in creation order
	daemon *daemon  // the running ibackup usbmuxd (shared with sub rigs)
}

// newRig creates the phones, starts the daemon and waits until
// `idevice_id -l` lists every phone. The daemon is stopped (SIGINT, then
// SIGKILL after daemonStop) when the test ends and must exit cleanly.
func newRig(t *testing.T, specs ...phoneSpec) *rig {
	t.Helper()
	requireTools(t)
	r := &rig{t: t, dir: t.TempDir()}
	r.phones = filepath.Join(r.dir, "phones")
	for _, s := range specs {
		r.udids = append(r.udids, r.newPhone(s))
	}
	// UNIX socket paths are limited to 108 bytes; t.TempDir paths of long
	// test names are not, so the socket gets a short directory of its own.
	sockDir, err := os.MkdirTemp("", "ibx")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	r.addr = "UNIX:" + filepath.Join(sockDir, "mux.sock")
	r.daemon = &daemon{}
	t.Cleanup(func() { r.stopDaemon() })
	r.startDaemon()
	r.waitDevices(r.udids...)
	return r
}

// sub returns the rig for a subtest: the same daemon and phones, with
// failures reported to t.
func (r *rig) sub(t *testing.T) *rig {
	c := *r
	c.t = t
	return &c
}

// newPhone runs `ibackup fake new` and returns the new phone's UDID.
func (r *rig) newPhone(s phoneSpec) string {
	r.t.Helper()
	if s.Files == 0 {
		s.Files = 50
	}
	if s.Size == "" {
		s.Size = "150K"
	}
	if s.Profile == "" {
		s.Profile = "ios17"
	}
	before := r.phoneDirs()
	args := []string{"fake", "new", r.phones, "--files", strconv.Itoa(s.Files), "--size", s.Size,
		"--seed", strconv.Itoa(s.Seed), "--profile", s.Profile}
	if s.Name != "" {
		args = append(args, "--name", s.Name)
	}
	for _, f := range s.Faults {
		args = append(args, "--fault", f)
	}
	if s.Passcode != "" {
		args = append(args, "--passcode", s.Passcode)
	}
	r.ibackup(args...)
	for _, u := range r.phoneDirs() {
		if !slices.Contains(before, u) {
			return u
		}
	}
	r.t.Fatalf("fake new %v created no phone directory", args)
	return ""
}

// phoneDirs lists the phone directories (UDIDs) under r.phones.
func (r *rig) phoneDirs() []string {
	ents, err := os.ReadDir(r.phones)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(r.t, err)
	var out []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// files is the content tree root of phone udid.
func (r *rig) files(udid string) string { return filepath.Join(r.phones, udid, "files") }

// daemon is the current run of `ibackup usbmuxd`; stop ends it (SIGINT,
// SIGKILL after daemonStop) and returns its exit status and output. Only
// the test's goroutine (and its cleanup) touches it.
type daemon struct {
	stop func() (code int, logs string, err error)
}

// startDaemon runs `ibackup usbmuxd` on r.addr in the background.
func (r *rig) startDaemon() {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, ibackupBin, "usbmuxd", "--socket", r.addr, "--fake-dir", r.phones)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = daemonStop
	cmd.Env = childEnv()
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		cancel()
		r.t.Fatalf("starting ibackup usbmuxd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	r.daemon.stop = func() (int, string, error) {
		cancel()
		err := <-exited
		return cmd.ProcessState.ExitCode(), logs.String(), err
	}
}

// stopDaemon stops the daemon, which unplugs every phone (a simulated
// phone restarts when unplugged), and checks that it exited cleanly.
func (r *rig) stopDaemon() {
	r.t.Helper()
	if r.daemon.stop == nil {
		return
	}
	code, logs, err := r.daemon.stop()
	r.daemon.stop = nil
	// After Cancel, Wait reports the context's error even for exit status
	// 0; the exit status is what counts (-1 = killed after daemonStop).
	assert.Equal(r.t, 0, code, "ibackup usbmuxd did not exit cleanly on SIGINT: %v", err)
	if r.t.Failed() {
		r.t.Logf("ibackup usbmuxd output:\n%s", logs)
	}
}

// restartDaemon unplugs every phone by stopping the daemon, starts a new
// one on the same socket and waits for the phones.
func (r *rig) restartDaemon() {
	r.t.Helper()
	r.stopDaemon()
	r.startDaemon()
	r.waitDevices(r.udids...)
}

// waitDevices polls `idevice_id -l` until it lists every udid.
func (r *rig) waitDevices(udids ...string) {
	r.t.Helper()
	deadline := time.Now().Add(daemonStartup)
	var last result
	for time.Now().Before(deadline) {
		last = r.run("idevice_id", "-l")
		if last.code == 0 {
			listed := strings.Fields(last.out)
			ok := true
			for _, u := range udids {
				ok = ok && slices.Contains(listed, u)
			}
			if ok {
				return
			}
		}
		time.Sleep(50 * time.Millisecond) // polling an external process; no event to wait on
	}
	r.t.Fatalf("daemon did not list %v within %v; last idevice_id -l (exit %d):\n%s",
		udids, daemonStartup, last.code, last.out)
}

// result is the outcome of one external program run.
type result struct {
	code int    // exit status (-1 when killed by the timeout)
	out  string // stdout and stderr interleaved
}

// run executes name (a Debian tool, or "ibackup") with the daemon's socket
// in USBMUXD_SOCKET_ADDRESS, bounded by toolTimeout. Only the test's
// goroutine may call it (it stops the test on a timeout); see exec.
func (r *rig) run(name string, args ...string) result {
	r.t.Helper()
	res, err := r.exec(name, args...)
	if err != nil {
		r.t.Fatal(err)
	}
	return res
}

// exec is run without touching the test, for use from other goroutines:
// it fails only when the program cannot start or outlives toolTimeout.
func (r *rig) exec(name string, args ...string) (result, error) {
	what := name + " " + strings.Join(args, " ")
	if name == "ibackup" {
		name = ibackupBin
	}
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = childEnv("USBMUXD_SOCKET_ADDRESS=" + r.addr)
	cmd.Stdin = strings.NewReader("")
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	res := result{out: out.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("%s: no exit within %v\n%s", what, toolTimeout, res.out)
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		return res, fmt.Errorf("%s: %w\n%s", what, err, res.out)
	}
	return res, nil
}

// must runs a program and requires exit status 0; it returns the output.
func (r *rig) must(name string, args ...string) string {
	r.t.Helper()
	res := r.run(name, args...)
	require.Equal(r.t, 0, res.code, "%s %s exited %d:\n%s", name, strings.Join(args, " "), res.code, res.out)
	return res.out
}

// ibackup runs our own CLI (not through the daemon unless args say so).
func (r *rig) ibackup(args ...string) string {
	r.t.Helper()
	return r.must("ibackup", args...)
}

// mustContain runs a program, requires exit 0 and the given phrase.
func (r *rig) mustContain(phrase string, name string, args ...string) string {
	r.t.Helper()
	out := r.must(name, args...)
	require.Contains(r.t, out, phrase, "%s %s", name, strings.Join(args, " "))
	return out
}

// backupDir makes an empty directory for backups below the scratch root.
func (r *rig) backupDir(name string) string {
	r.t.Helper()
	d := filepath.Join(r.dir, name)
	require.NoError(r.t, os.MkdirAll(d, 0o755))
	return d
}

// childEnv is the environment of every program a test starts. A race
// build of ibackup would otherwise sleep 1 s at every exit (GORACE
// atexit_sleep_ms defaults to 1000).
func childEnv(extra ...string) []string {
	env := os.Environ()
	if raceEnabled {
		env = append(env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	}
	return append(env, extra...)
}

// lockedBuffer is a bytes.Buffer safe for the concurrent writes of exec's
// stdout and stderr copiers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
