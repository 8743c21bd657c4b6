package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/ibackup/ibackup/mobilebackup2/snapshot"
	"github.com/spf13/pflag"
)

func init() {
	register(&command{
		name:  "versions",
		args:  "DIR",
		short: "list (and prune) the kept versions of the backups in DIR",
		setup: func(fs *pflag.FlagSet) func(context.Context, *env, []string) error {
			var udid string
			var prune int
			var asJSON bool
			fs.StringVarP(&udid, "udid", "u", "", "only the backup of the phone with this `UDID`")
			fs.IntVar(&prune, "prune", 0, "remove the oldest versions so that at most `N` remain (the current one is always kept)")
			fs.BoolVar(&asJSON, "json", false, "print JSON")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usageError("want one backup DIR")
				}
				if prune < 0 {
					return usageError("--prune must be >= 0")
				}
				return listVersions(e, args[0], udid, prune, asJSON)
			}
		},
	})
}

// versionJSON is one version in --json output.
type versionJSON struct {
	UDID      string `json:"udid"`
	ID        string `json:"id"`
	Current   bool   `json:"current"`
	Unmanaged bool   `json:"unmanaged,omitempty"`
	Full      bool   `json:"full"`
	Verified  bool   `json:"verified"`
	Files     int    `json:"files"`
	Bytes     int64  `json:"bytes"`
	Path      string `json:"path"`
}

func listVersions(e *env, dir, udid string, prune int, asJSON bool) error {
	udids := []string{udid}
	if udid == "" {
		ents, err := os.ReadDir(filepath.Join(dir, ".ibackup"))
		if err != nil {
			return fmt.Errorf("no versioned backups in %s: %w", dir, err)
		}
		udids = nil
		for _, en := range ents {
			if en.IsDir() {
				udids = append(udids, en.Name())
			}
		}
	}
	var out []versionJSON
	for _, u := range udids {
		st, err := snapshot.Open(dir, u)
		if err != nil {
			return err
		}
		if prune > 0 {
			removed, err := st.Prune(prune)
			for _, id := range removed {
				if !asJSON {
					fmt.Fprintf(e.stderr, "removed version %s of %s\n", id, u)
				}
			}
			if err != nil {
				st.Close()
				return err
			}
		}
		vs, err := st.Versions()
		st.Close()
		if err != nil {
			return err
		}
		for _, v := range vs {
			j := versionJSON{UDID: u, ID: v.ID, Current: v.Current, Unmanaged: v.Unmanaged, Path: v.Path(u)}
			if v.Record != nil {
				j.Full, j.Verified = v.Record.FullBackup, v.Record.Verified
				j.Files, j.Bytes = int(v.Record.Count), v.Record.Bytes
			}
			out = append(out, j)
		}
	}
	if asJSON {
		if out == nil {
			out = []versionJSON{}
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "UDID\tVERSION\tCURRENT\tKIND\tVERIFIED\tFILES\tSIZE")
	for _, v := range out {
		kind := "incremental"
		if v.Full {
			kind = "full"
		}
		cur := ""
		if v.Current {
			cur = "*"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%v\t%d\t%s\n", v.UDID, v.ID, cur, kind, v.Verified, v.Files, humanBytes(v.Bytes))
	}
	return w.Flush()
}
