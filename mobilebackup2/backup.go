package mobilebackup2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/snapshot"
)

// BackupOptions configures one backup.
type BackupOptions struct {
	// IdleTimeout, when positive, ends the operation with ErrStalled once
	// the phone has neither sent nor accepted a byte for that long (see
	// Client.SetIdleTimeout). Zero waits as long as the phone takes.
	IdleTimeout time.Duration
	// OnStall is called once when IdleTimeout expires; it should close the
	// transport to the phone (a stalled USB link can block a write below the
	// connection, where no deadline reaches).
	OnStall func()
	// Dir is the backup directory; the backup appears as Dir/<Target>.
	Dir string
	// Target is the UDID of the connected phone (TargetIdentifier).
	Target string
	// Source is SourceIdentifier; "" sends Target (as idevicebackup2 does).
	Source string
	// Full sends Options.ForceFullBackup (§2.2); the phone then re-sends
	// every file. The previous version is kept either way.
	Full bool
	// Keep is how many versions to keep after a successful backup
	// (0 = keep all).
	Keep int
	// Info is what Info.plist is built from (required).
	Info *InfoInput
	// Progress, when set, receives events on the calling goroutine.
	Progress func(Event)
	// Logger receives debug and warning messages (nil = discard).
	Logger *slog.Logger
	// SkipVerify turns off per-file hashing and the final checks (the
	// record then holds no checksums). Meant for measurements.
	SkipVerify bool
	// NoSync skips the one pass that makes the received files durable
	// before the new version is committed (syncfs, or fsync file by file
	// where the platform has no syncfs): faster, not crash-safe against
	// power loss; a process crash is still safe.
	NoSync bool
	// Password, when set, is the phone's backup password: an encrypted
	// backup is then verified decrypted (every file's key, padding, size
	// and digest). Without it only the stored sizes of an encrypted backup
	// are checked. It is never sent to the phone (§6: the phone encrypts
	// with the password it holds).
	Password string
	// TempDir receives the decrypted Manifest.db while verifying ("" =
	// os.TempDir).
	TempDir string
	// SpaceLimit, when > 0, caps the bytes this backup may write; the phone
	// is told at most this much free space and writes beyond it fail as a
	// full disk.
	SpaceLimit int64
}

// Result describes a successful backup.
type Result struct {
	// Version is the new current version.
	Version snapshot.Version
	// Path is Dir/<Target>.
	Path string
	// FullBackup is Status.plist IsFullBackup (the phone's decision, §4.1).
	FullBackup bool
	// FilesReceived and BytesReceived count what the phone sent this run.
	FilesReceived int
	BytesReceived int64
	// FilesVerified is the number of files checked against Manifest.db.
	FilesVerified int
	// Pruned lists version IDs removed by Keep.
	Pruned []string
	// Warnings are non-fatal problems (e.g. a file the phone could not read
	// but that is not part of the manifest, §8 pitfall 11).
	Warnings []string
	// Duration is the wall time of the run.
	Duration time.Duration
}

// Backup runs one backup into a new version of opts.Dir/<Target>: it writes
// Info.plist, sends Backup, answers the phone until its final result,
// verifies every file and only then makes the new version current. On any
// error the previous backup is left exactly as it was.
func (c *Client) Backup(ctx context.Context, opts BackupOptions) (*Result, error) {
	if opts.IdleTimeout > 0 {
		c.SetIdleTimeout(opts.IdleTimeout)
	}
	defer c.watchIdle(opts.OnStall)()
	if !c.handshok {
		return nil, ErrNotHandshaken
	}
	start := time.Now()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	info, err := BuildInfo(opts.Target, opts.Info)
	if err != nil {
		return nil, err
	}
	store, err := snapshot.Open(opts.Dir, opts.Target)
	if err != nil {
		return nil, fmt.Errorf("mobilebackup2: %w", err)
	}
	defer store.Close()
	work, err := store.Begin()
	if err != nil {
		return nil, fmt.Errorf("mobilebackup2: %w", err)
	}
	res, err := c.runBackup(ctx, opts, log, info, work)
	if err != nil {
		if aerr := work.Abort(); aerr != nil {
			log.Warn("could not remove the unfinished run", "error", aerr)
		}
		return nil, err
	}
	if opts.Keep > 0 {
		pruned, err := store.Prune(opts.Keep)
		res.Pruned = pruned
		if err != nil {
			res.Warnings = append(res.Warnings, err.Error())
		}
	}
	res.Path = filepath.Join(opts.Dir, opts.Target)
	res.Duration = time.Since(start)
	if opts.Progress != nil {
		opts.Progress(Event{Phase: PhaseDone, Percent: 100, Files: res.FilesReceived, Bytes: res.BytesReceived})
	}
	return res, nil
}

func (c *Client) runBackup(ctx context.Context, opts BackupOptions, log *slog.Logger, info *backupfmt.Info, work *snapshot.Work) (*Result, error) {
	udidDir := filepath.Join(work.Root(), opts.Target)
	if err := os.MkdirAll(udidDir, 0o755); err != nil {
		return nil, fmt.Errorf("mobilebackup2: %w", err)
	}
	if err := backupfmt.WriteInfo(filepath.Join(udidDir, "Info.plist"), info); err != nil {
		return nil, fmt.Errorf("mobilebackup2: writing Info.plist: %w", err)
	}
	root, err := os.OpenRoot(work.Root())
	if err != nil {
		return nil, fmt.Errorf("mobilebackup2: %w", err)
	}
	defer root.Close()

	e := &engine{
		dl: c.dl, root: root, rootDir: work.Root(), q: quota{limit: opts.SpaceLimit},
		stalled: c.stalled,
		hash:    !opts.SkipVerify, log: log, progress: opts.Progress,
		received: newRecvTable(),
	}
	defer e.close()
	if !opts.NoSync {
		if e.dur, err = newDurability(root); err != nil {
			return nil, err
		}
		defer e.dur.close()
	}
	e.knowDirs(opts.Target)
	e.knowDirs(opts.Target + "/Snapshot")
	e.ev.Phase = PhaseConnecting
	e.emit()

	defer c.watch(ctx)()
	source := opts.Source
	if source == "" {
		source = opts.Target
	}
	req := map[string]any{"MessageName": "Backup", "TargetIdentifier": opts.Target, "SourceIdentifier": source}
	if opts.Full {
		req["Options"] = map[string]any{"ForceFullBackup": true}
	}
	if err := c.dl.WriteProcessMessage(req); err != nil {
		return nil, c.ctxErr(ctx, err)
	}
	e.ev.Phase = PhasePreparing
	e.emit()
	final, err := e.run(ctx)
	if err != nil {
		if e.diskFull {
			return nil, errors.Join(errDiskFull, err)
		}
		return nil, err
	}
	if final.code != 0 {
		derr := &DeviceError{Code: final.code, Description: final.description}
		if e.diskFull {
			return nil, errors.Join(errDiskFull, derr)
		}
		return nil, derr
	}
	if e.diskFull {
		return nil, fmt.Errorf("%w: %w", errDiskFull, e.lastWrite)
	}

	// The working copy is made durable while it is verified; the version
	// is committed only after both (issue 11: syncfs passes, not one fsync
	// per received file).
	durable := make(chan error, 1)
	if e.dur == nil {
		durable <- nil
	} else {
		go func() { durable <- e.dur.finish() }()
	}
	e.ev.Phase = PhaseVerifying
	e.emit()
	v := &verifier{root: root, rootDir: work.Root(), udid: opts.Target, received: e.received,
		hash: !opts.SkipVerify, progress: opts.Progress, ev: e.ev, password: opts.Password, tempDir: opts.TempDir}
	if b, ok := work.Base(); ok && !b.Unmanaged {
		v.base = &b
	}
	rec, sum, err := v.run()
	if derr := <-durable; err == nil && derr != nil {
		err = derr
	}
	if err != nil {
		return nil, err
	}
	if len(sum.problems) > 0 {
		return nil, &VerifyError{Problems: sum.problems}
	}
	res := &Result{FullBackup: sum.full, FilesReceived: e.ev.Files, BytesReceived: e.ev.Bytes,
		FilesVerified: sum.files, Warnings: sum.warnings}
	for _, p := range e.remoteErrs {
		res.Warnings = append(res.Warnings, p.String())
	}
	if opts.Progress != nil {
		ev := e.ev
		ev.Phase = PhaseCommitting
		opts.Progress(ev)
	}
	ver, err := work.Commit(rec)
	if err != nil {
		return nil, fmt.Errorf("mobilebackup2: %w", err)
	}
	res.Version = ver
	return res, nil
}
