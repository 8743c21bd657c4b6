// Package faultsuite is the crash and fault suite of issue 11. It drives the
// ibackup binary (built once) against simulated phones (--fake-dir) and
// checks that data is never lost:
//
//   - SIGKILL of `ibackup backup` at seeded random moments: the last good
//     backup still verifies, restores completely onto a fresh simulated
//     phone (trees compared), and the next backup succeeds;
//   - every link fault and phone error of the simulated phone
//     (--fake-fault), during a backup and during a restore: a clear error
//     message, a non-zero exit, no hang beyond the timeout, the backup on
//     disk untouched and still verifying, and never a backup or restore
//     reported good that is not.
//
// Run it with `go run ./fakedevice/faultsuite/cmd` or
// `go test -tags faultsuite ./fakedevice/faultsuite/`; both print a final
// line "N passed, N failed".
package faultsuite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Config configures one suite run.
type Config struct {
	// Ibackup is the ibackup binary under test.
	Ibackup string
	// Work is an empty scratch directory.
	Work string
	// Seed makes the kill moments and file changes reproducible.
	Seed uint64
	// Kills is the number of SIGKILL moments (default 20).
	Kills int
	// Timeout bounds every ibackup command (default 30 s); a command still
	// running then counts as a hang.
	Timeout time.Duration
	// Out receives one line per case and the final "N passed, N failed".
	Out io.Writer
}

// Result is the outcome of one case; Err is nil when it passed.
type Result struct {
	Name string
	Err  error
}

// suite is one run's state.
type suite struct {
	cfg      Config
	phones   string // DIR of the simulated phone that is backed up
	udid     string
	backups  string // backup DIR
	lastGood Tree   // phone content at the last successful backup
	fresh    int    // counter for fresh restore targets
	// stallFlag is the CLI's idle-timeout flag per verb, if it has one.
	stallFlag map[string]string
	results   []Result
}

// Build compiles ./cmd/ibackup of the module at root into dir and returns
// the binary's path.
func Build(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "ibackup")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/ibackup")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("faultsuite: go build ./cmd/ibackup: %w\n%s", err, out)
	}
	return bin, nil
}

// Run runs every case and returns the results; the error reports a setup
// failure (no simulated phone, no first backup), not a failed case.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if cfg.Kills <= 0 {
		cfg.Kills = 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	s := &suite{cfg: cfg, phones: filepath.Join(cfg.Work, "phone"), backups: filepath.Join(cfg.Work, "backups")}
	if err := s.setup(ctx); err != nil {
		return nil, err
	}
	s.killCases(ctx)
	s.faultCases(ctx)
	passed := 0
	for _, r := range s.results {
		if r.Err == nil {
			passed++
		}
	}
	fmt.Fprintf(cfg.Out, "%d passed, %d failed\n", passed, len(s.results)-passed)
	return s.results, nil
}

// record stores and prints one case's outcome.
func (s *suite) record(name string, err error) {
	s.results = append(s.results, Result{Name: name, Err: err})
	if err != nil {
		fmt.Fprintf(s.cfg.Out, "FAIL %s: %v\n", name, err)
		return
	}
	fmt.Fprintf(s.cfg.Out, "ok   %s\n", name)
}

// setup makes the simulated phone and the first good backup.
func (s *suite) setup(ctx context.Context) error {
	r := s.ibackup(ctx, "fake", "new", s.phones, "--files", "40", "--size", "1M", "--seed", strconv.FormatUint(s.cfg.Seed%1000+1, 10))
	if r.err != nil {
		return fmt.Errorf("faultsuite: making the simulated phone: %w", r.err)
	}
	ents, err := os.ReadDir(s.phones)
	if err != nil {
		return fmt.Errorf("faultsuite: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			s.udid = e.Name()
		}
	}
	if s.udid == "" {
		return errors.New("faultsuite: fake new made no phone")
	}
	if r := s.ibackup(ctx, "backup", "--fake-dir", s.phones, s.backups); r.err != nil {
		return fmt.Errorf("faultsuite: first backup: %w", r.err)
	}
	s.stallFlag = map[string]string{}
	for _, verb := range []string{"backup", "restore"} {
		help := s.ibackup(ctx, verb, "--help")
		for _, f := range []string{"--stall-timeout", "--idle-timeout"} {
			if strings.Contains(help.stdout+help.stderr, f) {
				s.stallFlag[verb] = f
				break
			}
		}
	}
	if s.lastGood, err = Fingerprint(s.content()); err != nil {
		return err
	}
	return nil
}

// content is the simulated phone's content tree.
func (s *suite) content() string { return filepath.Join(s.phones, s.udid, "files") }

// current is the current version of the backup (DIR/<UDID>).
func (s *suite) current() string { return filepath.Join(s.backups, s.udid) }

// run is the outcome of one ibackup command.
type run struct {
	code           int // exit code, -1 when killed or not started
	stdout, stderr string
	wall           time.Duration
	hung           bool // still running at the timeout (then killed)
	err            error
}

// ibackup runs the binary with args under the suite's timeout.
func (s *suite) ibackup(ctx context.Context, args ...string) run {
	return s.signal(ctx, 0, 0, args...)
}

// start runs the binary; with killAfter > 0 it sends SIGKILL after that
// long (if it is still running) and the kill is not an error.
func (s *suite) start(ctx context.Context, killAfter time.Duration, args ...string) run {
	return s.signal(ctx, syscall.SIGKILL, killAfter, args...)
}

// signal runs the binary and sends it sig after the given time (if it is
// still running; 0 = never). A process that ends by the signal is no error.
func (s *suite) signal(ctx context.Context, sig syscall.Signal, after time.Duration, args ...string) run {
	cmd := exec.Command(s.cfg.Ibackup, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = nil
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return run{code: -1, err: fmt.Errorf("faultsuite: %w", err)}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var (
		r      run
		werr   error
		killed bool
	)
	var killC <-chan time.Time
	if after > 0 {
		kt := time.NewTimer(after)
		defer kt.Stop()
		killC = kt.C
	}
	to := time.NewTimer(s.cfg.Timeout)
	defer to.Stop()
wait:
	for {
		select {
		case werr = <-done:
			break wait
		case <-killC:
			killed = true
			_ = cmd.Process.Signal(sig)
			killC = nil
		case <-to.C:
			r.hung = true
			_ = cmd.Process.Signal(syscall.SIGKILL)
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	r.wall = time.Since(start)
	r.stdout, r.stderr = out.String(), errb.String()
	r.code = -1
	if cmd.ProcessState != nil {
		r.code = cmd.ProcessState.ExitCode()
	}
	switch {
	case r.hung:
		r.err = fmt.Errorf("ibackup %s: still running after %v (killed)", strings.Join(args, " "), s.cfg.Timeout)
	case ctx.Err() != nil:
		r.err = ctx.Err()
	case werr != nil && !killed:
		r.err = fmt.Errorf("ibackup %s: %w: %s", strings.Join(args, " "), werr, lastLines(r.stderr, 3))
	}
	return r
}

// lastLines returns the last n non-empty lines of s, joined with " | ".
func lastLines(s string, n int) string {
	var ls []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			ls = append(ls, strings.TrimSpace(l))
		}
	}
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, " | ")
}
