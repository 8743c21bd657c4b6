package faultsuite

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// killRate slows the link of half the killed backups.
const killRate = "rate=4M/s"

// killCases SIGKILLs `ibackup backup` at cfg.Kills seeded random moments
// spread over the length of a full backup. After each kill the last good
// backup must verify and restore completely onto a fresh phone, and the
// next backup must succeed.
func (s *suite) killCases(ctx context.Context) {
	rng := rand.New(rand.NewPCG(s.cfg.Seed, 0x6b696c6c)) // "kill"
	// Odd moments kill an incremental backup over a slow link (most of the
	// run is then the transfer), even ones a full backup at full speed
	// (setup, verification and commit weigh more). Moments fall anywhere
	// from process start to just after such a backup would have finished
	// (a kill after the commit is a case too).
	slow := []string{"--fake-fault", killRate}
	var window [2]time.Duration
	for k, extra := range [][]string{nil, slow} {
		args := append([]string{"backup", "--full", "--fake-dir", s.phones}, extra...)
		timing := s.ibackup(ctx, append(args, s.backups)...)
		if timing.err != nil {
			s.record("kill: timing a full backup", timing.err)
			return
		}
		window[k] = timing.wall + timing.wall/10
	}
	for i := 1; i <= s.cfg.Kills && ctx.Err() == nil; i++ {
		if err := mutate(s.content(), rng, i); err != nil {
			s.record(fmt.Sprintf("kill %d: changing the phone", i), err)
			return
		}
		cur, err := Fingerprint(s.content())
		if err != nil {
			s.record(fmt.Sprintf("kill %d", i), err)
			return
		}
		args := []string{"backup", "--fake-dir", s.phones}
		kind, w := "full", window[0]
		if i%2 == 1 {
			args = append(args, slow...)
			kind, w = "incremental, "+killRate, window[1]
		} else {
			args = append(args, "--full")
		}
		delay := time.Duration(rng.Int64N(int64(w))) + time.Millisecond
		r := s.start(ctx, delay, append(args, s.backups)...)
		reached := "not started"
		if l := lastLines(r.stdout+r.stderr, 1); l != "" {
			reached, _, _ = strings.Cut(l, ":")
			reached, _, _ = strings.Cut(reached, " (")
		}
		name := fmt.Sprintf("SIGKILL %2d of ibackup backup (%s) after %v, reached %q", i, kind, delay.Round(time.Millisecond), reached)
		s.record(name, s.afterKill(ctx, r, cur))
	}
}

// afterKill checks the state after a killed backup whose phone content
// was cur.
func (s *suite) afterKill(ctx context.Context, killed run, cur Tree) error {
	if killed.hung {
		return killed.err
	}
	completed := killed.code == 0
	if r := s.ibackup(ctx, "verify", s.backups); r.code != 0 {
		return fmt.Errorf("the last good backup does not verify after the kill (exit %d): %s", r.code, lastLines(r.stdout+r.stderr, 4))
	}
	got, before, err := s.restoreFresh(ctx, nil)
	if err != nil {
		return fmt.Errorf("restoring the last good backup: %w", err)
	}
	switch {
	case Diff(cur, got, before) == "":
		// The killed run had already committed its backup.
		s.lastGood = cur
	case completed:
		return fmt.Errorf("the backup exited 0 but its restore differs from the phone: %s", Diff(cur, got, before))
	default:
		if d := Diff(s.lastGood, got, before); d != "" {
			return fmt.Errorf("restore of the last good backup is incomplete: %s", d)
		}
	}
	if r := s.ibackup(ctx, "backup", "--fake-dir", s.phones, s.backups); r.err != nil {
		return fmt.Errorf("the next backup failed: %w", r.err)
	}
	s.lastGood = cur
	if r := s.ibackup(ctx, "verify", s.backups); r.code != 0 {
		return fmt.Errorf("the next backup does not verify (exit %d): %s", r.code, lastLines(r.stdout+r.stderr, 4))
	}
	return nil
}

// restoreFresh restores the backup onto a newly made simulated phone and
// returns its content afterwards and before. extra are more restore flags
// (for example --fake-fault); a failed restore returns the run's error.
func (s *suite) restoreFresh(ctx context.Context, extra []string) (got, before Tree, err error) {
	r, got, before, err := s.restoreFreshRun(ctx, extra)
	if err == nil && r.err != nil {
		err = r.err
	}
	return got, before, err
}

// restoreFreshRun is restoreFresh that also returns the restore's run,
// for cases that expect the restore to fail.
func (s *suite) restoreFreshRun(ctx context.Context, extra []string) (run, Tree, Tree, error) {
	s.fresh++
	dir := filepath.Join(s.cfg.Work, "target-"+strconv.Itoa(s.fresh))
	defer os.RemoveAll(dir)
	if r := s.ibackup(ctx, "fake", "new", dir, "--files", "1", "--size", "1K", "--seed", strconv.Itoa(5000+s.fresh)); r.err != nil {
		return run{}, nil, nil, r.err
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 {
		return run{}, nil, nil, fmt.Errorf("fake new %s: expected one phone (%v)", dir, err)
	}
	files := filepath.Join(dir, ents[0].Name(), "files")
	before, err := Fingerprint(files)
	if err != nil {
		return run{}, nil, nil, err
	}
	args := append([]string{"restore", "--fake-dir", dir, "--source", s.udid, "--system", "--no-reboot"}, extra...)
	r := s.ibackup(ctx, append(args, s.backups)...)
	got, err := Fingerprint(files)
	return r, got, before, err
}

// mutate changes the phone the way use does between backups: two existing
// files get new content and a newer mtime, and one file is added.
func mutate(root string, rng *rand.Rand, i int) error {
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return err
	}
	later := time.Now().Add(time.Duration(i) * time.Minute)
	write := func(p string) error {
		b := make([]byte, 1+rng.IntN(48<<10))
		for k := range b {
			b[k] = byte(rng.Uint32())
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
		return os.Chtimes(p, later, later)
	}
	for range 2 {
		if len(files) == 0 {
			break
		}
		if err := write(files[rng.IntN(len(files))]); err != nil {
			return err
		}
	}
	dir := filepath.Join(root, "HomeDomain", "Library", "FaultSuite")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return write(filepath.Join(dir, fmt.Sprintf("note-%02d.txt", i)))
}
