package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ibackup/ibackup/lockdown"
	"github.com/ibackup/ibackup/mobilebackup2"
	"github.com/spf13/pflag"
)

// backupService is the lockdown name of the backup service
// (mobilebackup2-and-backup-format.md §1.1).
const backupService = "com.apple.mobilebackup2"

func init() {
	register(&command{
		name:  "backup",
		args:  "DIR",
		short: "back up the phone into DIR/<UDID> (incremental after the first run)",
		long: `Writes the standard iTunes/Finder layout (DIR/<UDID>/...) and checks every file as it
arrives. A new backup becomes current only after it verified; on any failure the last good
backup stays exactly as it was. Older versions are kept (hard links make them cheap); see
'ibackup versions DIR'.`,
		setup: func(fs *pflag.FlagSet) func(context.Context, *env, []string) error {
			var c connFlags
			var full, asJSON bool
			var keep int
			var password string
			var idle time.Duration
			c.register(fs)
			fs.BoolVar(&full, "full", false, "force a full backup (the phone re-sends every file)")
			fs.IntVar(&keep, "keep", 0, "keep at most `N` versions after a successful backup (0 = all)")
			fs.BoolVar(&asJSON, "json", false, "print progress and the result as JSON lines")
			fs.StringVar(&password, "password", "", "the phone's backup `PASSWORD`, to verify the files of an encrypted backup")
			fs.DurationVar(&idle, "idle-timeout", 0, "give up when the phone sends and accepts nothing for `D` (0 = wait as long as the phone takes; a phone may be silent for minutes while it prepares)")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usageError("want one backup DIR")
				}
				if keep < 0 {
					return usageError("--keep must be >= 0")
				}
				return runBackup(ctx, e, &c, mobilebackup2.BackupOptions{Dir: args[0], Full: full, Keep: keep, Password: password, IdleTimeout: idle}, asJSON)
			}
		},
	})
}

// runBackup connects, gathers Info.plist inputs, opens mobilebackup2 and runs
// one backup with progress.
func runBackup(ctx context.Context, e *env, c *connFlags, opts mobilebackup2.BackupOptions, asJSON bool) error {
	t, cl, err := connectLockdown(ctx, e, c, lockdown.PairIfNeeded, false)
	if err != nil {
		return err
	}
	defer t.Close()
	defer cl.Close()
	info, err := gatherInfo(ctx, cl)
	if err != nil {
		return err
	}
	if enc, err := cl.GetValue(ctx, "com.apple.mobile.backup", "WillEncrypt"); err == nil && enc == true && !asJSON {
		fmt.Fprintln(e.stderr, "the phone makes encrypted backups (backup password set on the phone)")
	}
	if apps, err := userApps(ctx, t, cl); err == nil {
		info.Apps = apps
	} else if !asJSON {
		fmt.Fprintf(e.stderr, "warning: cannot list apps (Info.plist will have none): %v\n", err)
	}
	sync, err := startSync(ctx, t, cl)
	if err != nil {
		return err
	}
	pr := newProgress(e, asJSON)
	evDone := sync.watchEvents(e, pr)
	bctx, unbind := sync.lock.Bind(ctx)
	opts.Target, opts.Info, opts.Progress = t.UDID, info, pr.event
	res, err := backupWithService(bctx, e, t, cl, info, pr, opts)
	unbind()
	if rerr := sync.close(ctx); rerr != nil && err == nil && !asJSON {
		fmt.Fprintf(e.stderr, "warning: releasing the sync lock: %v\n", rerr)
	}
	<-evDone
	pr.done()
	if err != nil {
		return err
	}
	if asJSON {
		pr.emit(map[string]any{
			"event": "done", "path": res.Path, "version": res.Version.ID, "full": res.FullBackup,
			"files_received": res.FilesReceived, "bytes_received": res.BytesReceived,
			"files_verified": res.FilesVerified, "pruned": res.Pruned, "warnings": res.Warnings,
			"seconds": res.Duration.Seconds(),
		})
		return nil
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(e.stderr, "warning: %s\n", w)
	}
	kind := "incremental"
	if res.FullBackup {
		kind = "full"
	}
	fmt.Fprintf(e.stdout, "backup complete: %s (%s, version %s): %d files received (%s), %d files verified in %s\n",
		res.Path, kind, res.Version.ID, res.FilesReceived, humanBytes(res.BytesReceived), res.FilesVerified,
		res.Duration.Round(time.Millisecond))
	if len(res.Pruned) > 0 {
		fmt.Fprintf(e.stdout, "pruned old versions: %s\n", strings.Join(res.Pruned, ", "))
	}
	return nil
}

// gatherInfo reads what Info.plist is built from (client-needs §4.4): the
// root lockdown domain and com.apple.iTunes.
func gatherInfo(ctx context.Context, cl *lockdown.Client) (*mobilebackup2.InfoInput, error) {
	v, err := cl.GetValue(ctx, "", "")
	if err != nil {
		return nil, err
	}
	values, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("lockdown values: unexpected %T", v)
	}
	in := &mobilebackup2.InfoInput{Values: values}
	if it, err := cl.GetValue(ctx, "com.apple.iTunes", ""); err == nil {
		in.ITunesSettings, _ = it.(map[string]any)
	}
	if mv, err := cl.GetValue(ctx, "com.apple.mobile.iTunes", "MinITunesVersion"); err == nil {
		in.MinITunesVersion, _ = mv.(string)
	}
	return in, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// backupWithService opens mobilebackup2 (with the escrow bag) and runs one backup.
func backupWithService(ctx context.Context, e *env, t *target, cl *lockdown.Client, info *mobilebackup2.InfoInput,
	pr *progress, opts mobilebackup2.BackupOptions) (*mobilebackup2.Result, error) {
	conn, err := cl.StartService(ctx, t.Dialer, backupService, true)
	if err != nil {
		return nil, err
	}
	mb := mobilebackup2.NewClient(conn)
	defer mb.Close()
	if _, err := mb.Handshake(ctx); err != nil {
		return nil, err
	}
	if pr.json == nil {
		kind := "incremental"
		if opts.Full {
			kind = "full"
		}
		pr.note("backing up %s (%s, iOS %s) into %s (%s unless the phone decides otherwise)\n",
			t.UDID, str(info.Values["DeviceName"]), str(info.Values["ProductVersion"]), opts.Dir, kind)
	}
	opts.OnStall = t.Unplug // unblocks a write stuck on a stalled link
	res, err := mb.Backup(ctx, opts)
	if errors.Is(err, mobilebackup2.ErrStalled) {
		t.Unplug() // the link is unusable: later cleanup must not wait on it
	}
	return res, err
}
