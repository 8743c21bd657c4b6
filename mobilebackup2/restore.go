package mobilebackup2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ibackup/ibackup/lockdown/plistconn"
	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/keybag"
	"github.com/ibackup/ibackup/mobilebackup2/offline"
	"github.com/ibackup/ibackup/mobilebackup2/snapshot"
)

// ErrBackupUnusable reports a backup refused before anything was sent to
// the phone (issue 8 item 1); the RefusedError carries the reasons.
var ErrBackupUnusable = errors.New("mobilebackup2: backup cannot be restored")

// RefusedError lists why a restore was refused.
type RefusedError struct {
	Reasons []string
}

// Error implements error.
func (e *RefusedError) Error() string {
	return "mobilebackup2: backup cannot be restored: " + strings.Join(e.Reasons, "; ")
}

// Unwrap makes errors.Is(err, ErrBackupUnusable) true.
func (e *RefusedError) Unwrap() error { return ErrBackupUnusable }

// RestoreOptions configures a restore. The Options dict sent to the phone
// always carries every key explicitly (§2.2.1: device defaults for missing
// keys are undocumented; the anchors disagree, corrections C9):
//
//	RestoreSystemFiles      = System
//	RestoreShouldReboot     = !NoReboot
//	RestoreDontCopyBackup   = !Copy
//	RestorePreserveSettings = !Settings   (idevicebackup2 semantics: keep the phone's settings unless --settings)
//	RemoveItemsNotRestored  = Remove
//	Password                = Password (only when set)
type RestoreOptions struct {
	// IdleTimeout, when positive, ends the operation with ErrStalled once
	// the phone has neither sent nor accepted a byte for that long (see
	// Client.SetIdleTimeout). Zero waits as long as the phone takes.
	IdleTimeout time.Duration
	// OnStall is called once when IdleTimeout expires; it should close the
	// transport to the phone (a stalled USB link can block a write below the
	// connection, where no deadline reaches).
	OnStall func()
	// Dir is the backup directory holding <Source>/.
	Dir string
	// Target is the connected phone's UDID; Source is the backup's folder
	// name ("" = Target; another device's UDID for a cross-device restore).
	Target, Source string
	// Version picks a kept version by ID ("" = current).
	Version string
	// DeviceVersion is the phone's ProductVersion; a backup from a newer
	// iOS is refused unless Force.
	DeviceVersion                            string
	System, NoReboot, Copy, Settings, Remove bool
	// Password of an encrypted backup.
	Password string
	// Force skips the refusal checks (unfinished, failing verification,
	// newer iOS).
	Force bool
	// TempDir is scratch space for verifying encrypted backups.
	TempDir  string
	Progress func(Event)
	Logger   *slog.Logger
}

// RestoreResult describes a finished restore.
type RestoreResult struct {
	// Version is the backup version that was restored.
	Version string
	// FilesSent and BytesSent count content served to the phone.
	FilesSent int
	BytesSent int64
	Duration  time.Duration
}

// restoreRoot returns the directory the phone's paths are relative to for
// the chosen version: Dir itself for the current version (DIR/<UDID> is a
// symlink or plain folder there, and a device copy lands beside it as
// iTunes does), or the version's directory.
func restoreRoot(opts RestoreOptions, source string) (root, id string, err error) {
	vs, err := snapshot.List(opts.Dir, source)
	if err != nil {
		return "", "", fmt.Errorf("mobilebackup2: %w", err)
	}
	for _, v := range vs {
		if (opts.Version == "" && v.Current) || (opts.Version != "" && v.ID == opts.Version) {
			if v.Current {
				return opts.Dir, v.ID, nil
			}
			return v.Dir, v.ID, nil
		}
	}
	if opts.Version == "" {
		if _, err := os.Stat(filepath.Join(opts.Dir, source)); err == nil {
			return opts.Dir, "unmanaged", nil
		}
		return "", "", &RefusedError{Reasons: []string{fmt.Sprintf("no backup of %s in %s", source, opts.Dir)}}
	}
	return "", "", &RefusedError{Reasons: []string{fmt.Sprintf("no version %q of %s", opts.Version, source)}}
}

// precheck refuses unfinished, corrupt and too-new backups (§7.1).
func precheck(udidDir string, opts RestoreOptions) error {
	var reasons []string
	info, err := backupfmt.ReadInfo(filepath.Join(udidDir, "Info.plist"))
	if err != nil {
		reasons = append(reasons, "Info.plist: "+err.Error())
	}
	st, err := backupfmt.ReadStatus(filepath.Join(udidDir, "Status.plist"))
	switch {
	case err != nil:
		reasons = append(reasons, "Status.plist: "+err.Error())
	case !st.Finished():
		reasons = append(reasons, fmt.Sprintf("the backup is unfinished (SnapshotState %q)", st.SnapshotState))
	}
	mf, err := backupfmt.ReadManifest(filepath.Join(udidDir, "Manifest.plist"))
	if err != nil {
		reasons = append(reasons, "Manifest.plist: "+err.Error())
	} else if mf.IsEncrypted && opts.Password == "" {
		return &PasswordError{Kind: ErrPasswordRequired, Also: []error{ErrBackupUnusable}}
	}
	if info != nil && opts.DeviceVersion != "" && compareVersions(info.ProductVersion, opts.DeviceVersion) > 0 {
		reasons = append(reasons, fmt.Sprintf("the backup is from iOS %s, newer than the phone's iOS %s", info.ProductVersion, opts.DeviceVersion))
	}
	rep, err := offline.Verify(udidDir, offline.VerifyOptions{Options: offline.Options{Password: opts.Password, TempDir: opts.TempDir}})
	switch {
	case errors.Is(err, keybag.ErrWrongPassword):
		// The backup's keybag refuses the password: refused before the
		// phone sees anything (it would answer 207, §7.2 step 4).
		return &PasswordError{Kind: ErrWrongPassword, Also: []error{ErrBackupUnusable}}
	case err != nil:
		reasons = append(reasons, "verification: "+err.Error())
	case len(rep.Problems) > 0:
		for i, p := range rep.Problems {
			if i == 10 {
				reasons = append(reasons, fmt.Sprintf("and %d more verification problems", len(rep.Problems)-10))
				break
			}
			reasons = append(reasons, fmt.Sprintf("verification: %s %s/%s: %s", p.Kind, p.Domain, p.Path, p.Detail))
		}
	}
	if len(reasons) > 0 {
		return &RefusedError{Reasons: reasons}
	}
	return nil
}

// compareVersions compares dotted numeric versions ("17.5.1" vs "18.0").
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// RestoreApplications returns the XML plist idevicebackup2 writes to
// /iTunesRestore/RestoreApplications.plist through AFC before a restore
// (the Info.plist Applications dict, §7.1 step 4). The caller writes it
// unless --skip-apps.
func RestoreApplications(info *backupfmt.Info) ([]byte, error) {
	apps := map[string]any{}
	for id, a := range info.Applications {
		d := map[string]any{"ApplicationSINF": a.ApplicationSINF, "iTunesMetadata": a.ITunesMetadata}
		if len(a.PlaceholderIcon) > 0 {
			d["PlaceholderIcon"] = a.PlaceholderIcon
		}
		apps[id] = d
	}
	b, err := plistconn.Marshal(apps, plistconn.XML)
	if err != nil {
		return nil, fmt.Errorf("mobilebackup2: %w", err)
	}
	return b, nil
}

// Restore puts a backup back on the phone (§7). The backup is checked
// first and refused (RefusedError, nothing sent) when unfinished, failing
// verification, or from a newer iOS, unless Force. During the restore the
// phone may read anything but cannot change the backup being restored.
func (c *Client) Restore(ctx context.Context, opts RestoreOptions) (*RestoreResult, error) {
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
	source := opts.Source
	if source == "" {
		source = opts.Target
	}
	if source == "" || strings.ContainsAny(source, `/\`) || strings.HasPrefix(source, ".") {
		return nil, fmt.Errorf("mobilebackup2: invalid source identifier %q", source)
	}
	rootDir, id, err := restoreRoot(opts, source)
	if err != nil {
		return nil, err
	}
	if id != "unmanaged" {
		// Hold the store's lock so no backup prunes or swaps the version
		// while the phone reads it.
		st, err := snapshot.Open(opts.Dir, source)
		if err != nil {
			return nil, fmt.Errorf("mobilebackup2: %w", err)
		}
		defer st.Close()
	}
	if !opts.Force {
		if err := precheck(filepath.Join(rootDir, source), opts); err != nil {
			return nil, err
		}
	}
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		return nil, fmt.Errorf("mobilebackup2: %w", err)
	}
	defer root.Close()
	e := &engine{
		dl: c.dl, root: root, rootDir: rootDir, log: log, progress: opts.Progress,
		stalled:  c.stalled,
		received: newRecvTable(), readOnly: map[string]bool{source: true, opts.Target: true},
		dirs: map[string]bool{},
	}
	defer e.close()
	o := map[string]any{
		"RestoreSystemFiles":      opts.System,
		"RestoreShouldReboot":     !opts.NoReboot,
		"RestoreDontCopyBackup":   !opts.Copy,
		"RestorePreserveSettings": !opts.Settings,
		"RemoveItemsNotRestored":  opts.Remove,
	}
	if opts.Copy {
		// The phone copies <Target> to <Target>-date and writes its Info.plist.
		delete(e.readOnly, opts.Target)
		if opts.Target == source {
			e.readOnly[source] = true
		}
	}
	if opts.Password != "" {
		o["Password"] = opts.Password
	}
	req := map[string]any{"MessageName": "Restore", "TargetIdentifier": opts.Target, "SourceIdentifier": source, "Options": o}
	defer c.watch(ctx)()
	if err := c.dl.WriteProcessMessage(req); err != nil {
		return nil, c.ctxErr(ctx, err)
	}
	e.ev.Phase = PhaseSending
	e.emit()
	final, err := e.run(ctx)
	if err != nil {
		return nil, err
	}
	if final.code == CodePassword {
		return nil, passwordResult(&DeviceError{Code: final.code, Description: final.description})
	}
	if final.code != 0 {
		return nil, &DeviceError{Code: final.code, Description: final.description}
	}
	res := &RestoreResult{Version: id, FilesSent: e.sent, BytesSent: e.sentBytes, Duration: time.Since(start)}
	if opts.Progress != nil {
		opts.Progress(Event{Phase: PhaseDone, Percent: 100, Files: e.sent, Bytes: e.sentBytes})
	}
	return res, nil
}
