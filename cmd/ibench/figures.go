package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// figure is one measured result and its goal.
type figure struct {
	Name    string
	What    string
	Value   float64
	Unit    string // "" for a ratio
	Goal    float64
	AtLeast bool // goal is Value >= Goal (else Value <= Goal)
	Detail  string
}

func (f figure) met() bool {
	if f.AtLeast {
		return f.Value >= f.Goal
	}
	return f.Value <= f.Goal
}

func (f figure) String() string {
	op, verdict := "≤", "MISS"
	if f.AtLeast {
		op = "≥"
	}
	if f.met() {
		verdict = "ok"
	}
	return fmt.Sprintf("%-12s %-62s %8.2f%s  goal %s %g%s  %-4s (%s)",
		f.Name, f.What, f.Value, f.Unit, op, f.Goal, f.Unit, verdict, f.Detail)
}

func (b *bench) record(f figure) {
	b.results = append(b.results, f)
	fmt.Fprintln(b.out, f)
}

// skip prints a figure that cannot be measured on this machine.
func (b *bench) skip(name, what, why string) {
	fmt.Fprintf(b.out, "%-12s %-62s skipped: %s\n", name, what, why)
}

// ours runs `ibackup backup` of one phone through the daemon into out.
func (b *bench) ours(ctx context.Context, udid, out string, extra ...string) (usage, string, error) {
	var args []string
	if b.profDir != "" {
		b.nprof++
		args = append(args, fmt.Sprintf("%s%s/backup-%02d.pprof", profileArg, b.profDir, b.nprof),
			fmt.Sprintf("%s%s/backup-%02d.heap", memProfileArg, b.profDir, b.nprof))
	}
	args = append(args, "backup", "--usbmuxd", b.d.socket, "-u", udid)
	args = append(args, extra...)
	args = append(args, out)
	var tail tailBuffer
	u, err := b.runTo(ctx, &tail, b.ibackup, nil, args...)
	return u, tail.String(), err
}

// theirs runs `idevicebackup2 backup --full` of one phone through the daemon.
func (b *bench) theirs(ctx context.Context, udid, out string) (usage, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return usage{}, err
	}
	var tail tailBuffer
	u, err := b.runTo(ctx, &tail, b.idb2, []string{"USBMUXD_SOCKET_ADDRESS=" + b.d.socket},
		"-u", udid, "backup", "--full", out)
	if err == nil && !strings.Contains(tail.String(), "Backup Successful") {
		err = fmt.Errorf("idevicebackup2 did not report success:\n%s", tail.String())
	}
	return u, err
}

// fresh returns a new empty output directory path.
func (b *bench) fresh(name string) string {
	p := filepath.Join(b.work, "out", fmt.Sprintf("%s-%d", name, time.Now().UnixNano()))
	return p
}

// cleanup is called when an output directory is no longer needed. It
// keeps it: deleting many files right before the next measurement makes
// file creation slower on some file systems (ext4 without a journal scans
// recently deleted inodes), which would skew the next figure. Every output
// directory is removed at the end of the run instead.
func cleanup(string) {}

func (b *bench) reps() int {
	if b.quick {
		return 1
	}
	return 2
}

// cpuFigure: host CPU time (user+system of the client) of a full backup,
// idevicebackup2 ÷ ours; the lower CPU of each tool's runs counts.
func (b *bench) cpuFigure(ctx context.Context, name string, p *phoneSpec, goal float64) error {
	what := fmt.Sprintf("host CPU, full backup of %d files (%s): idevicebackup2 ÷ ibackup", p.Files, mibs(p.bytes))
	if b.idb2 == "" {
		b.skip(name, what, "idevicebackup2 not installed")
		return nil
	}
	var best [2]usage
	for i := range b.reps() {
		dir := b.fresh(name + "-idb2")
		t, err := b.theirs(ctx, p.udid, dir)
		cleanup(dir)
		if err != nil {
			return err
		}
		dir = b.fresh(name + "-ours")
		o, _, err := b.ours(ctx, p.udid, dir)
		cleanup(dir)
		if err != nil {
			return err
		}
		if i == 0 || t.CPU < best[0].CPU {
			best[0] = t
		}
		if i == 0 || o.CPU < best[1].CPU {
			best[1] = o
		}
	}
	b.record(figure{Name: name, What: what, Value: secs(best[0].CPU) / secs(best[1].CPU), Goal: goal, AtLeast: true,
		Detail: fmt.Sprintf("CPU idevicebackup2 %s, ibackup %s; wall %s vs %s",
			dur(best[0].CPU), dur(best[1].CPU), dur(best[0].Wall), dur(best[1].Wall))})
	return nil
}

// rateFigure: one phone behind a rate-limited link; our achieved content
// rate ÷ the limit, and wall time idevicebackup2 ÷ ours.
func (b *bench) rateFigure(ctx context.Context, p *phoneSpec) error {
	dir := b.fresh("rate-ours")
	o, _, err := b.ours(ctx, p.udid, dir)
	cleanup(dir)
	if err != nil {
		return err
	}
	rate := float64(p.bytes) / secs(o.Wall)
	b.record(figure{Name: "rate", What: fmt.Sprintf("phone limited to %s/s, %s: achieved rate ÷ limit", mibs(p.Rate), mibs(p.bytes)),
		Value: rate / float64(p.Rate), Goal: 0.95, AtLeast: true,
		Detail: fmt.Sprintf("%.1f MiB/s in %s", rate/mib, dur(o.Wall))})
	what := fmt.Sprintf("phone limited to %s/s: wall time idevicebackup2 ÷ ibackup", mibs(p.Rate))
	if b.idb2 == "" {
		b.skip("rate-wall", what, "idevicebackup2 not installed")
		return nil
	}
	dir = b.fresh("rate-idb2")
	t, err := b.theirs(ctx, p.udid, dir)
	cleanup(dir)
	if err != nil {
		return err
	}
	b.record(figure{Name: "rate-wall", What: what, Value: secs(t.Wall) / secs(o.Wall), Goal: 1.0, AtLeast: true,
		Detail: fmt.Sprintf("idevicebackup2 %s, ibackup %s", dur(t.Wall), dur(o.Wall))})
	return nil
}

// incrFigure: wall time of an incremental backup after 1 % of the files
// changed ÷ the full backup before it (ours).
func (b *bench) incrFigure(ctx context.Context, p *phoneSpec) error {
	dir := b.fresh("incr")
	defer cleanup(dir)
	full, out, err := b.ours(ctx, p.udid, dir)
	if err != nil {
		return err
	}
	if !strings.Contains(out, "(full") {
		return fmt.Errorf("first backup was not reported as full:\n%s", out)
	}
	n, err := changeFiles(filepath.Join(b.work, "phones", p.udid, "files"), 0.01, 7)
	if err != nil {
		return err
	}
	inc, out, err := b.ours(ctx, p.udid, dir)
	if err != nil {
		return err
	}
	if !strings.Contains(out, "(incremental") {
		return fmt.Errorf("second backup was not incremental:\n%s", out)
	}
	b.record(figure{Name: "incremental", What: fmt.Sprintf("incremental (%d of %d files changed) ÷ full, wall time", n, p.Files),
		Value: secs(inc.Wall) / secs(full.Wall), Goal: 0.1,
		Detail: fmt.Sprintf("full %s, incremental %s", dur(full.Wall), dur(inc.Wall))})
	return nil
}

// farmFigure: every farm phone backed up at once; achieved ÷ offered
// throughput (offered = phones × per-phone limit).
func (b *bench) farmFigure(ctx context.Context, ps []*phoneSpec) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		errs  []error
		total int64
	)
	start := time.Now()
	for _, p := range ps {
		total += p.bytes
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir := b.fresh("farm")
			_, _, err := b.ours(ctx, p.udid, dir)
			cleanup(dir)
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	offered := float64(len(ps)) * float64(ps[0].Rate)
	achieved := float64(total) / secs(wall)
	b.record(figure{Name: "farm", What: fmt.Sprintf("%d phones at %s/s each at once: achieved ÷ offered", len(ps), mibs(ps[0].Rate)),
		Value: achieved / offered, Goal: 0.9, AtLeast: true,
		Detail: fmt.Sprintf("%.1f of %.0f MiB/s, %s in %s", achieved/mib, offered/mib, mibs(total), dur(wall))})
	return nil
}

// memFigure: peak resident memory of backup, verify and ls of a phone with
// many files.
func (b *bench) memFigure(ctx context.Context, p *phoneSpec) error {
	dir := b.fresh("mem")
	defer cleanup(dir)
	bk, _, err := b.ours(ctx, p.udid, dir)
	if err != nil {
		return err
	}
	b.record(memFig("mem-backup", fmt.Sprintf("peak RSS, ibackup backup of %d files", p.Files), bk))
	vf, err := b.runTo(ctx, io.Discard, b.ibackup, nil, b.memArgs("verify", "verify", dir)...)
	if err != nil {
		return err
	}
	b.record(memFig("mem-verify", "peak RSS, ibackup verify of that backup", vf))
	ls, err := b.runTo(ctx, io.Discard, b.ibackup, nil, b.memArgs("ls", "ls", dir)...)
	if err != nil {
		return err
	}
	b.record(memFig("mem-ls", "peak RSS, ibackup ls of that backup", ls))
	return nil
}

// memArgs prefixes args with the heap-profile argument when profiling.
func (b *bench) memArgs(name string, args ...string) []string {
	if b.profDir == "" {
		return args
	}
	return append([]string{fmt.Sprintf("%s%s/%s.heap", memProfileArg, b.profDir, name)}, args...)
}

func memFig(name, what string, u usage) figure {
	return figure{Name: name, What: what, Value: float64(u.MaxRSS) / mib, Unit: " MiB", Goal: 256,
		Detail: fmt.Sprintf("wall %s, CPU %s", dur(u.Wall), dur(u.CPU))}
}

func secs(d time.Duration) float64 { return max(d.Seconds(), 1e-3) }

func dur(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }

func mibs(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/mib)
}
