package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/ibackup/ibackup/mobilebackup2/offline"
	"github.com/spf13/pflag"
)

// lsFlushRows is how many lines `ls` aligns at a time.
const lsFlushRows = 4096

// Offline commands work on a backup directory without a phone
// (backup-verification issue: verify, ls, extract, info BACKUP).

func init() {
	register(&command{
		name:  "verify",
		args:  "BACKUP",
		short: "check every file of a backup (exit 0 clean, 1 problems, 2 unreadable)",
		long: `BACKUP is a backup directory or its <UDID> folder. Reports, by file: missing, truncated,
size or digest mismatch, unreadable or undecryptable files, orphans, an unfinished snapshot,
and inconsistent or unparseable Info/Status/Manifest files. For backups made by ibackup the
checksum record kept beside the backup also detects bit rot.`,
		setup: func(fs *pflag.FlagSet) func(context.Context, *env, []string) error {
			var password string
			var asJSON, noRecord bool
			fs.StringVar(&password, "password", "", "backup `PASSWORD` (encrypted backups)")
			fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
			fs.BoolVar(&noRecord, "no-hash-record", false, "do not use ibackup's checksum record")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usageError("want one BACKUP")
				}
				rep, err := offline.Verify(args[0], offline.VerifyOptions{
					Options: offline.Options{Password: password}, NoHashRecord: noRecord,
				})
				if asJSON {
					if jerr := writeJSON(e, rep); jerr != nil {
						return jerr
					}
					return &exitError{code: rep.ExitCode()}
				}
				for _, p := range rep.Problems {
					name := p.Path
					if p.Domain != "" {
						name = p.Domain + "/" + p.Path
					}
					if p.FileID != "" {
						name += " (" + p.FileID + ")"
					}
					fmt.Fprintf(e.stdout, "%s: %s: %s\n", p.Kind, name, p.Detail)
				}
				fmt.Fprintln(e.stdout, rep.Summary())
				if err != nil {
					return &exitError{code: offline.ExitUnreadable, err: err}
				}
				return &exitError{code: rep.ExitCode()}
			}
		},
	})
	register(&command{
		name:  "repair",
		args:  "BACKUP --out NEW",
		short: "build a restorable backup in NEW from a damaged one (the original is only read)",
		long: `Salvages a leftover Snapshot/, falls back to the metadata of older versions kept by
ibackup, rebuilds Status.plist, drops manifest entries whose files are missing (listed below)
and verifies the result. NEW must not exist or be empty.`,
		setup: func(fs *pflag.FlagSet) func(context.Context, *env, []string) error {
			var password, out string
			var asJSON bool
			fs.StringVar(&out, "out", "", "write the repaired backup under `NEW` (required)")
			fs.StringVar(&password, "password", "", "backup `PASSWORD` (encrypted backups)")
			fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 || out == "" {
					return usageError("want one BACKUP and --out NEW")
				}
				rep, err := offline.Repair(args[0], out, offline.RepairOptions{Options: offline.Options{Password: password}})
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(e, rep)
				}
				for _, a := range rep.Actions {
					fmt.Fprintf(e.stdout, "- %s\n", a)
				}
				for _, p := range rep.Dropped {
					fmt.Fprintf(e.stdout, "dropped %s/%s: %s\n", p.Domain, p.Path, p.Detail)
				}
				for _, p := range rep.Fixed {
					fmt.Fprintf(e.stdout, "fixed %s/%s: %s\n", p.Domain, p.Path, p.Detail)
				}
				fmt.Fprintf(e.stdout, "repaired backup: %s (%d entries kept, %d dropped, %d orphan files not copied)\n",
					rep.Out, rep.Kept, len(rep.Dropped), rep.Orphans)
				if rep.Verify != nil {
					fmt.Fprintln(e.stdout, rep.Verify.Summary())
					if c := rep.Verify.ExitCode(); c != 0 {
						return &exitError{code: c}
					}
				}
				return nil
			}
		},
	})
	register(&command{
		name:  "ls",
		args:  "BACKUP",
		short: "list the files in a backup",
		setup: func(fs *pflag.FlagSet) func(context.Context, *env, []string) error {
			var password, domain string
			var asJSON bool
			fs.StringVar(&domain, "domain", "", "only this `DOMAIN`")
			fs.StringVar(&password, "password", "", "backup `PASSWORD` (encrypted backups)")
			fs.BoolVar(&asJSON, "json", false, "print JSON lines, one per entry")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usageError("want one BACKUP")
				}
				enc := json.NewEncoder(e.stdout)
				w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				rows := 0
				err := offline.List(args[0], offline.ListOptions{Options: offline.Options{Password: password}, Domain: domain},
					func(en offline.Entry) error {
						if err := ctx.Err(); err != nil {
							return err
						}
						if asJSON {
							return enc.Encode(en)
						}
						name := en.Domain + "/" + en.Path
						if en.Target != "" {
							name += " -> " + en.Target
						}
						_, err := fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", en.Type, en.Mode, en.Size,
							en.Modified.Format(time.DateTime), name)
						// tabwriter holds every line until Flush; flushing
						// in blocks keeps memory flat for a million files
						// (columns align within each block).
						if rows++; err == nil && rows%lsFlushRows == 0 {
							err = w.Flush()
						}
						return err
					})
				if ferr := w.Flush(); err == nil {
					err = ferr
				}
				return err
			}
		},
	})
	register(&command{
		name:  "extract",
		args:  "BACKUP OUT",
		short: "copy files out of a backup into OUT/<Domain>/<relativePath>",
		setup: func(fs *pflag.FlagSet) func(context.Context, *env, []string) error {
			var password, domain, glob string
			var asJSON bool
			fs.StringVar(&domain, "domain", "", "only this `DOMAIN`")
			fs.StringVar(&glob, "path", "", "only relative paths matching `GLOB` (a matching directory selects all below it)")
			fs.StringVar(&password, "password", "", "backup `PASSWORD` (encrypted backups)")
			fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 2 {
					return usageError("want BACKUP and OUT")
				}
				rep, err := offline.Extract(args[0], args[1], offline.ExtractOptions{
					Options: offline.Options{Password: password}, Domain: domain, PathGlob: glob,
				})
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(e, rep)
				}
				for _, s := range rep.Skipped {
					fmt.Fprintf(e.stderr, "skipped %s/%s: %s\n", s.Domain, s.Path, s.Reason)
				}
				for _, s := range rep.SizeMismatch {
					fmt.Fprintf(e.stderr, "note: %s/%s: %s\n", s.Domain, s.Path, s.Reason)
				}
				fmt.Fprintf(e.stdout, "extracted %d files (%s), %d directories, %d symlinks into %s\n",
					rep.Files, humanBytes(rep.Bytes), rep.Dirs, rep.Symlinks, rep.Out)
				return nil
			}
		},
	})
}

// offlineInfo summarises a backup directory (info BACKUP).
func offlineInfo(ctx context.Context, e *env, dir, password string, asJSON bool) error {
	s, err := offline.Describe(dir, offline.Options{Password: password})
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(e, s)
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 1, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(w, "%s:\t%v\n", k, v) }
	row("Backup", s.Dir)
	row("Device", fmt.Sprintf("%s (%s)", s.DeviceName, s.ProductType))
	row("UDID", s.UDID)
	row("iOS", fmt.Sprintf("%s (%s)", s.ProductVersion, s.BuildVersion))
	row("Serial number", s.SerialNumber)
	row("Date", s.Date.Local().Format(time.DateTime))
	row("Format", s.Format)
	row("Encrypted", s.Encrypted)
	row("Full backup", s.IsFullBackup)
	row("Snapshot state", s.SnapshotState)
	if s.CountsKnown {
		row("Files", fmt.Sprintf("%d files, %d directories, %d symlinks in %d domains", s.Files, s.Dirs, s.Symlinks, s.Domains))
		row("Data size", humanBytes(s.DataSize))
	} else {
		row("Files", "unknown (encrypted manifest: give --password)")
	}
	row("Size on disk", humanBytes(s.DiskSize))
	for _, p := range s.Problems {
		row("Problem", p)
	}
	return w.Flush()
}

// writeJSON prints v indented.
func writeJSON(e *env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
