package faultsuite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// faultCase is one --fake-fault of the simulated phone.
type faultCase struct {
	spec string
	// mustFail: the command cannot succeed with this fault, so exit 0
	// would mean a backup (or restore) reported good that is not.
	// Otherwise success is allowed when the result checks out.
	mustFail bool
	// freshPair runs with a new, empty pair record directory (pairing
	// faults only show while pairing).
	freshPair bool
}

// backupFaults are the link faults and phone errors injected during a
// backup. The phone sends about 1.5 MiB, so 4K hits the lockdown session
// and 300K the file transfer.
var backupFaults = []faultCase{
	{spec: "link-drop-after=4K", mustFail: true},
	{spec: "link-drop-after=300K", mustFail: true},
	{spec: "stall-after=300K", mustFail: true},
	{spec: "corrupt-after=4K"},
	{spec: "corrupt-after=300K"},
	{spec: "error=208", mustFail: true},
	{spec: "error=105", mustFail: true},
	{spec: "error=3", mustFail: true},
	{spec: "error=205", mustFail: true},
	{spec: "remote-error-file=10", mustFail: true},
	{spec: "truncate-file=10", mustFail: true},
	{spec: "passcode-wait", mustFail: true},
	{spec: "wrong-cert", mustFail: true},
	{spec: "deny-trust", mustFail: true, freshPair: true},
	{spec: "locked", mustFail: true, freshPair: true},
	{spec: "disk-full", mustFail: true},
}

// restoreFaults are injected during a restore onto a fresh phone; the
// restore sends about 1.5 MiB.
var restoreFaults = []faultCase{
	{spec: "link-drop-after=4K", mustFail: true},
	{spec: "link-drop-after=200K", mustFail: true},
	{spec: "stall-after=200K", mustFail: true},
	{spec: "corrupt-after=4K"},
	{spec: "corrupt-after=200K"},
	{spec: "error=208", mustFail: true},
	{spec: "error=105", mustFail: true},
	{spec: "error=3", mustFail: true},
	{spec: "error=205", mustFail: true},
	{spec: "remote-error-file=3"},
	{spec: "truncate-file=3"},
	{spec: "passcode-wait", mustFail: true},
	{spec: "wrong-cert", mustFail: true},
	{spec: "disk-full", mustFail: true},
}

// notFaults are listed by `ibackup faults` but are no failure to check.
var notFaults = map[string]bool{"rate": true, "trust-delay": true}

// faultCases runs every backup and restore fault and notes the faults
// `ibackup faults` lists that the suite does not know.
func (s *suite) faultCases(ctx context.Context) {
	known := map[string]bool{}
	for _, fc := range append(append([]faultCase(nil), backupFaults...), restoreFaults...) {
		known[faultName(fc.spec)] = true
	}
	if r := s.ibackup(ctx, "faults"); r.err == nil {
		for _, l := range strings.Split(r.stdout, "\n") {
			if l == "" || l[0] == ' ' {
				continue
			}
			n := faultName(strings.Fields(l)[0])
			if !known[n] && !notFaults[n] {
				fmt.Fprintf(s.cfg.Out, "note: fault %q is not exercised by the suite\n", n)
			}
		}
	}
	for i, fc := range backupFaults {
		if ctx.Err() != nil {
			return
		}
		s.record("backup with "+fc.spec, s.backupFault(ctx, fc, i))
	}
	for _, fc := range restoreFaults {
		if ctx.Err() != nil {
			return
		}
		s.record("restore with "+fc.spec, s.restoreFault(ctx, fc))
	}
	for _, verb := range []string{"backup", "restore"} {
		if ctx.Err() != nil {
			return
		}
		s.record(fmt.Sprintf("SIGTERM of a stalled %s ends it within %v", verb, termGrace), s.termStalled(ctx, verb))
	}
}

// termGrace is how long a stalled command may take to end after SIGTERM
// (Ctrl-C sends SIGINT, service managers SIGTERM).
// The CLI bounds its cleanup on a phone that stopped answering
// (cmd/ibackup releaseTimeout 5 s; synclock DefaultCleanupTimeout 10 s).
const termGrace = 15 * time.Second

// termStalled starts a backup or restore whose link stalls, sends SIGTERM
// once it is stuck, and checks that it ends promptly, says so, and leaves
// the last good backup alone.
func (s *suite) termStalled(ctx context.Context, verb string) error {
	before, err := Fingerprint(s.current())
	if err != nil {
		return err
	}
	const stuck = 2 * time.Second
	var args []string
	if verb == "backup" {
		args = []string{"backup", "--full", "--fake-dir", s.phones, "--fake-fault", "stall-after=300K", s.backups}
	} else {
		s.fresh++
		dir := filepath.Join(s.cfg.Work, "target-"+strconv.Itoa(s.fresh))
		defer os.RemoveAll(dir)
		if r := s.ibackup(ctx, "fake", "new", dir, "--files", "1", "--size", "1K", "--seed", strconv.Itoa(5000+s.fresh)); r.err != nil {
			return r.err
		}
		args = []string{"restore", "--fake-dir", dir, "--source", s.udid, "--system", "--no-reboot",
			"--fake-fault", "stall-after=200K", s.backups}
	}
	sub := *s
	sub.cfg.Timeout = stuck + termGrace
	r := sub.signal(ctx, syscall.SIGTERM, stuck, args...)
	if r.hung {
		return fmt.Errorf("still running %v after SIGTERM (killed)", termGrace)
	}
	if r.code == 0 {
		return fmt.Errorf("the stalled %s reported success", verb)
	}
	if r.code > 0 {
		if err := clearError(r, verb); err != nil {
			return err
		}
	}
	return s.untouched(ctx, before)
}

// stallArgs returns the idle-timeout flag for a stall fault when the CLI
// has one (found in its help at setup), so a stall is expected to end the
// command well within the suite's timeout.
func (s *suite) stallArgs(verb, spec string) []string {
	f := s.stallFlag[verb]
	if f == "" || faultName(spec) != "stall-after" {
		return nil
	}
	return []string{f + "=" + (s.cfg.Timeout / 3).String()}
}

// faultName is the name part of a fault spec ("link-drop-after=4K",
// "passcode-wait[=DUR]").
func faultName(spec string) string {
	n, _, _ := strings.Cut(spec, "=")
	n, _, _ = strings.Cut(n, "[")
	return n
}

// clearError checks that a failed command said why, the CLI's way.
func clearError(r run, verb string) error {
	msg := lastLines(r.stderr, 2)
	switch {
	case r.code <= 0:
		return fmt.Errorf("exit code %d, want a non-zero exit", r.code)
	case strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine "):
		return fmt.Errorf("crashed: %s", lastLines(r.stderr, 6))
	case !strings.Contains(r.stderr, "ibackup "+verb+": "):
		return fmt.Errorf("no error message (want a line \"ibackup %s: ...\"), stderr: %q", verb, msg)
	}
	return nil
}

// backupFault runs one full backup with the fault and checks the outcome.
func (s *suite) backupFault(ctx context.Context, fc faultCase, i int) error {
	before, err := Fingerprint(s.current())
	if err != nil {
		return err
	}
	cur, err := Fingerprint(s.content())
	if err != nil {
		return err
	}
	args := []string{"backup", "--full", "--fake-dir", s.phones, "--fake-fault", fc.spec}
	args = append(args, s.stallArgs("backup", fc.spec)...)
	if fc.freshPair {
		args = append(args, "--pair-dir", filepath.Join(s.cfg.Work, "pair-"+strconv.Itoa(i)))
	}
	r := s.ibackup(ctx, append(args, s.backups)...)
	if r.hung {
		return r.err
	}
	if r.code == 0 {
		if fc.mustFail {
			return fmt.Errorf("the backup reported success although the phone failed: %s", lastLines(r.stdout, 1))
		}
		// A success must be a complete, correct backup.
		if v := s.ibackup(ctx, "verify", s.backups); v.code != 0 {
			return fmt.Errorf("backup reported good but does not verify: %s", lastLines(v.stdout+v.stderr, 4))
		}
		got, fresh, err := s.restoreFresh(ctx, nil)
		if err != nil {
			return fmt.Errorf("restoring the backup: %w", err)
		}
		if d := Diff(cur, got, fresh); d != "" {
			return fmt.Errorf("backup reported good but restores different content: %s", d)
		}
		s.lastGood = cur
		return nil
	}
	if err := clearError(r, "backup"); err != nil {
		return err
	}
	return s.untouched(ctx, before)
}

// untouched checks that the current backup is exactly as before and
// still verifies.
func (s *suite) untouched(ctx context.Context, before Tree) error {
	after, err := Fingerprint(s.current())
	if err != nil {
		return fmt.Errorf("the last good backup is gone: %w", err)
	}
	if d := Diff(before, after, nil); d != "" {
		return fmt.Errorf("the last good backup changed: %s", d)
	}
	if v := s.ibackup(ctx, "verify", s.backups); v.code != 0 {
		return fmt.Errorf("the last good backup does not verify: %s", lastLines(v.stdout+v.stderr, 4))
	}
	return nil
}

// restoreFault restores onto a fresh phone with the fault and checks the
// outcome: the backup directory is never written, a failure is clear, and
// a success restored everything.
func (s *suite) restoreFault(ctx context.Context, fc faultCase) error {
	before, err := Fingerprint(s.backups)
	if err != nil {
		return err
	}
	cur, err := Fingerprint(s.current())
	if err != nil {
		return err
	}
	r, got, fresh, err := s.restoreFreshRun(ctx, append([]string{"--fake-fault", fc.spec}, s.stallArgs("restore", fc.spec)...))
	if err != nil {
		return err
	}
	if r.hung {
		return r.err
	}
	after, err := Fingerprint(s.backups)
	if err != nil {
		return err
	}
	if d := Diff(before, after, nil); d != "" {
		return fmt.Errorf("the restore changed the backup directory: %s", d)
	}
	if r.code == 0 {
		if fc.mustFail {
			return fmt.Errorf("the restore reported success although the phone failed: %s", lastLines(r.stdout, 1))
		}
		if d := Diff(s.lastGood, got, fresh); d != "" {
			return fmt.Errorf("the restore reported success but the phone's content differs from the backup: %s", d)
		}
		return nil
	}
	if err := clearError(r, "restore"); err != nil {
		return err
	}
	return s.untouched(ctx, cur)
}
