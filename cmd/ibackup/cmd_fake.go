package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/ibackup/ibackup/fakedevice"
	"github.com/ibackup/ibackup/fakedevice/phone"
	"github.com/ibackup/ibackup/fakedevice/profile"
	"github.com/spf13/pflag"
)

func init() {
	register(&command{
		name:  "fake new",
		args:  "DIR",
		short: "create a simulated iPhone under DIR/<UDID>/",
		long: `The phone's content is an ordinary tree DIR/<UDID>/files/<Domain>/<relativePath>;
edit it between runs to change the phone. Content is deterministic for a seed.
Profiles: ` + profileList() + `.`,
		setup: func(fs *pflag.FlagSet) func(context.Context, *env, []string) error {
			var o phone.CreateOptions
			var size string
			var faults []string
			var passcode, backupPassword string
			fs.StringVar(&o.Profile, "profile", profile.DefaultName, "iOS `PROFILE` ("+strings.Join(profile.Names(), ", ")+")")
			fs.IntVar(&o.Files, "files", phone.DefaultFiles, "number of files to generate (`N`)")
			fs.StringVar(&size, "size", "", "approximate total content `SIZE`, e.g. 500K or 20M (default about 28K per file)")
			fs.Int64Var(&o.Seed, "seed", 1, "`SEED` for identity and content")
			fs.StringVar(&o.FromTree, "from-tree", "", "copy the tree at `PATH` as the content instead of generating it")
			fs.StringVar(&o.DeviceName, "name", "", "device `NAME` (default \"Test iPhone\")")
			fs.StringVar(&backupPassword, "backup-password", "", "turn backup encryption on with this `PASSWORD`")
			fs.StringVar(&passcode, "passcode", "", "give the phone a passcode `CODE` (iOS 16.1+ profiles then ask for it before a backup)")
			fs.StringArrayVar(&faults, "fault", nil, "`FAULT` stored with the phone (repeatable; see 'ibackup help faults')")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usageError("want one DIR")
				}
				if size != "" {
					n, err := fakedevice.ParseBytes(size)
					if err != nil {
						return usageError("--size: %v", err)
					}
					o.Size = n
				} else if o.Files > 0 {
					o.Size = int64(o.Files) * 28 << 10
				}
				if _, err := fakedevice.ParseFaults(faults); err != nil {
					return usageError("%v", err)
				}
				p, err := phone.Create(args[0], o)
				if err != nil {
					return err
				}
				if len(faults) > 0 || passcode != "" || backupPassword != "" {
					p.Config.Faults = faults
					p.Config.Passcode = passcode
					p.Config.WillEncrypt = backupPassword != ""
					p.Config.BackupPassword = backupPassword
					if err := p.Save(); err != nil {
						return err
					}
				}
				return describePhone(e, p, "created")
			}
		},
	})
	register(&command{
		name:  "fake ls",
		args:  "DIR",
		short: "list the simulated iPhones stored in DIR",
		setup: func(fs *pflag.FlagSet) func(context.Context, *env, []string) error {
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usageError("want one DIR")
				}
				ps, err := phone.List(args[0])
				if err != nil {
					return err
				}
				if len(ps) == 0 {
					fmt.Fprintf(e.stderr, "no simulated phones in %s (create one with 'ibackup fake new %s')\n", args[0], args[0])
					return nil
				}
				w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "UDID\tPROFILE\tiOS\tFILES\tBYTES\tENCRYPT\tFAULTS")
				for _, p := range ps {
					prof, _ := p.Profile()
					s, err := p.Stats()
					if err != nil {
						return err
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%v\t%s\n", p.UDID(), prof.Name, prof.ProductVersion,
						s.Files, s.Bytes, p.Config.WillEncrypt, strings.Join(p.Config.Faults, ","))
				}
				return w.Flush()
			}
		},
	})
	register(&command{
		name:  "faults",
		short: "list the faults a simulated phone can show (--fake-fault)",
		long:  "Faults are given with --fake-fault on any device command or stored with 'fake new --fault'.\nValues may be comma-separated.\n\n" + fakedevice.FaultHelp,
		setup: func(fs *pflag.FlagSet) func(context.Context, *env, []string) error {
			return func(ctx context.Context, e *env, args []string) error {
				fmt.Fprintln(e.stdout, fakedevice.FaultHelp)
				return nil
			}
		},
	})
}

func profileList() string {
	var s []string
	for _, p := range profile.All() {
		s = append(s, fmt.Sprintf("%s (%s)", p.Name, p.ProductVersion))
	}
	return strings.Join(s, ", ")
}

// describePhone prints one line about a phone.
func describePhone(e *env, p *phone.Phone, verb string) error {
	prof, err := p.Profile()
	if err != nil {
		return err
	}
	s, err := p.Stats()
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "%s simulated %s (%s, iOS %s) %s: %d files, %s, in %s\n",
		verb, prof.ProductType, prof.Name, prof.ProductVersion, p.UDID(), s.Files, humanBytes(s.Bytes), p.Dir)
	return nil
}

// humanBytes formats n as B, KiB, MiB or GiB.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
