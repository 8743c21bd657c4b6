package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/ibackup/ibackup/lockdown"
	"github.com/ibackup/ibackup/lockdown/afc"
	"github.com/ibackup/ibackup/mobilebackup2"
	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/spf13/pflag"
)

// restoreFlags are the options of `ibackup restore`.
type restoreFlags struct {
	opts     mobilebackup2.RestoreOptions
	skipApps bool
	asJSON   bool
}

func init() {
	register(&command{
		name:  "restore",
		args:  "DIR",
		short: "put a backup from DIR back on the phone",
		long: `Restores DIR/<UDID> (or the backup of --source UDID) to the connected phone. The backup is
checked first and refused, with the reasons, when it is unfinished, fails verification or is
from a newer iOS than the phone (--force overrides). Options sent to the phone
(mobilebackup2-and-backup-format.md §2.2.1; every key is always sent):
  RestoreSystemFiles = --system          RestoreShouldReboot = not --no-reboot
  RestoreDontCopyBackup = not --copy     RestorePreserveSettings = not --settings
  RemoveItemsNotRestored = --remove`,
		setup: func(fs *pflag.FlagSet) func(context.Context, *env, []string) error {
			var c connFlags
			var r restoreFlags
			c.register(fs)
			o := &r.opts
			fs.StringVar(&o.Source, "source", "", "restore the backup of another phone with this `UDID`")
			fs.StringVar(&o.Version, "version", "", "restore this kept `VERSION` (see 'ibackup versions'; default the newest)")
			fs.BoolVar(&o.System, "system", false, "restore system files too")
			fs.BoolVar(&o.NoReboot, "no-reboot", false, "do not reboot the phone afterwards")
			fs.BoolVar(&o.Copy, "copy", false, "let the phone keep a copy of the backup before restoring")
			fs.BoolVar(&o.Settings, "settings", false, "restore the phone's settings too")
			fs.BoolVar(&o.Remove, "remove", false, "remove items on the phone that are not in the backup")
			fs.StringVar(&o.Password, "password", "", "backup `PASSWORD` (encrypted backups)")
			fs.BoolVar(&o.Force, "force", false, "restore even if the backup is unfinished, fails verification or is from a newer iOS")
			fs.DurationVar(&o.IdleTimeout, "idle-timeout", 0, "give up when the phone sends and accepts nothing for `D` (0 = wait as long as the phone takes)")
			fs.BoolVar(&r.skipApps, "skip-apps", false, "do not ask the phone to reinstall the backup's apps")
			fs.BoolVar(&r.asJSON, "json", false, "print progress and the result as JSON lines")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usageError("want one backup DIR")
				}
				o.Dir = args[0]
				return runRestore(ctx, e, &c, &r)
			}
		},
	})
}

// runRestore connects, takes the sync lock, hands the app list to the
// phone (§7.1) and runs the restore with progress.
func runRestore(ctx context.Context, e *env, c *connFlags, r *restoreFlags) error {
	t, cl, err := connectLockdown(ctx, e, c, lockdown.PairIfNeeded, false)
	if err != nil {
		return err
	}
	defer t.Close()
	defer cl.Close()
	o := r.opts
	o.Target = t.UDID
	o.DeviceVersion = cl.ProductVersion()
	if o.DeviceVersion == "" {
		if v, err := cl.GetValue(ctx, "", "ProductVersion"); err == nil {
			o.DeviceVersion = str(v)
		}
	}
	source := o.Source
	if source == "" {
		source = o.Target
	}
	sync, err := startSync(ctx, t, cl)
	if err != nil {
		return err
	}
	pr := newProgress(e, r.asJSON)
	evDone := sync.watchEvents(e, pr)
	if !r.skipApps {
		if err := sendRestoreApps(ctx, sync.afc, filepath.Join(o.Dir, source, "Info.plist")); err != nil {
			pr.note("warning: cannot hand the app list to the phone: %v\n", err)
		}
	}
	rctx, unbind := sync.lock.Bind(ctx)
	o.Progress = pr.event
	res, err := restoreWithService(rctx, t, cl, pr, o)
	unbind()
	if rerr := sync.close(ctx); rerr != nil && err == nil && !r.asJSON {
		pr.note("warning: releasing the sync lock: %v\n", rerr)
	}
	<-evDone
	pr.done()
	if err != nil {
		return err
	}
	if r.asJSON {
		pr.emit(map[string]any{"event": "done", "version": res.Version, "files_sent": res.FilesSent,
			"bytes_sent": res.BytesSent, "seconds": res.Duration.Seconds()})
		return nil
	}
	fmt.Fprintf(e.stdout, "restore complete: version %s of %s: %d files sent (%s) in %s\n",
		res.Version, source, res.FilesSent, humanBytes(res.BytesSent), res.Duration.Round(time.Millisecond))
	if !o.NoReboot {
		fmt.Fprintln(e.stdout, "the phone restarts now")
	}
	return nil
}

// restoreWithService opens mobilebackup2 and runs one restore.
func restoreWithService(ctx context.Context, t *target, cl *lockdown.Client, pr *progress, o mobilebackup2.RestoreOptions) (*mobilebackup2.RestoreResult, error) {
	conn, err := cl.StartService(ctx, t.Dialer, backupService, true)
	if err != nil {
		return nil, err
	}
	mb := mobilebackup2.NewClient(conn)
	defer mb.Close()
	if _, err := mb.Handshake(ctx); err != nil {
		return nil, err
	}
	o.OnStall = t.Unplug // unblocks a write stuck on a stalled link
	res, err := mb.Restore(ctx, o)
	if errors.Is(err, mobilebackup2.ErrStalled) {
		t.Unplug() // the link is unusable: later cleanup must not wait on it
	}
	return res, err
}

// sendRestoreApps writes /iTunesRestore/RestoreApplications.plist through
// AFC as idevicebackup2 does before a restore (§7.1 step 4).
func sendRestoreApps(ctx context.Context, a *afc.Client, infoPath string) error {
	info, err := backupfmt.ReadInfo(infoPath)
	if err != nil {
		return err
	}
	b, err := mobilebackup2.RestoreApplications(info)
	if err != nil {
		return err
	}
	if err := a.MakeDir(ctx, "/iTunesRestore"); err != nil {
		return err
	}
	f, err := a.Open(ctx, "/iTunesRestore/RestoreApplications.plist", afc.ModeWrOnly)
	if err != nil {
		return err
	}
	for len(b) > 0 {
		n, err := f.Write(ctx, b)
		if err != nil {
			_ = f.Close(ctx)
			return err
		}
		b = b[n:]
	}
	return f.Close(ctx)
}
