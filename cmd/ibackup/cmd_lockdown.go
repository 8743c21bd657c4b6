package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ibackup/ibackup/lockdown"
	"github.com/ibackup/ibackup/lockdown/pairrecord"
	"github.com/spf13/pflag"
	"howett.net/plist"
)

func init() {
	register(&command{
		name:  "devices",
		short: "list the connected phones",
		setup: func(fs *pflag.FlagSet) func(context.Context, *env, []string) error {
			var c connFlags
			var asJSON bool
			c.register(fs)
			fs.BoolVar(&asJSON, "json", false, "print a JSON array")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 0 {
					return usageError("devices takes no arguments")
				}
				udids, err := c.list(ctx, e)
				if err != nil {
					return err
				}
				if asJSON {
					if udids == nil {
						udids = []string{}
					}
					return json.NewEncoder(e.stdout).Encode(udids)
				}
				for _, u := range udids {
					fmt.Fprintln(e.stdout, u)
				}
				return nil
			}
		},
	})
	register(&command{
		name:  "pair",
		short: "pair with the phone (the phone asks \"Trust this computer?\")",
		setup: func(fs *pflag.FlagSet) func(context.Context, *env, []string) error {
			var c connFlags
			c.register(fs)
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 0 {
					return usageError("pair takes no arguments")
				}
				t, cl, err := connectLockdown(ctx, e, &c, lockdown.PairAlways, false)
				if err != nil {
					return err
				}
				defer t.Close()
				defer cl.Close()
				fmt.Fprintf(e.stdout, "SUCCESS: paired with device %s\n", t.UDID)
				return nil
			}
		},
	})
	register(&command{
		name:  "validate",
		short: "check that the pairing with the phone works (starts a TLS session)",
		setup: func(fs *pflag.FlagSet) func(context.Context, *env, []string) error {
			var c connFlags
			c.register(fs)
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 0 {
					return usageError("validate takes no arguments")
				}
				t, cl, err := connectLockdown(ctx, e, &c, lockdown.PairNever, false)
				if err != nil {
					return err
				}
				defer t.Close()
				defer cl.Close()
				fmt.Fprintf(e.stdout, "SUCCESS: validated pairing with device %s\n", t.UDID)
				return nil
			}
		},
	})
	register(&command{
		name:  "unpair",
		short: "remove the pairing on the phone and on this computer",
		setup: func(fs *pflag.FlagSet) func(context.Context, *env, []string) error {
			var c connFlags
			c.register(fs)
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 0 {
					return usageError("unpair takes no arguments")
				}
				t, cl, err := connectLockdown(ctx, e, &c, lockdown.PairNever, true)
				if err != nil {
					return err
				}
				defer t.Close()
				defer cl.Close()
				if err := cl.Unpair(ctx, t.Store, t.UDID); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "SUCCESS: unpaired with device %s\n", t.UDID)
				return nil
			}
		},
	})
	register(&command{
		name:  "info",
		args:  "[BACKUP]",
		short: "show the phone's lockdown values, or summarise a backup directory",
		long: `Without BACKUP: reads values from the phone (all of the root domain by default).
With BACKUP (a backup directory or its <UDID> folder): summarises the backup offline.`,
		setup: func(fs *pflag.FlagSet) func(context.Context, *env, []string) error {
			var c connFlags
			var asJSON, noSession bool
			var domain, key, password string
			c.register(fs)
			fs.BoolVar(&asJSON, "json", false, "print JSON")
			fs.StringVarP(&domain, "domain", "q", "", "value `DOMAIN`, e.g. com.apple.mobile.backup")
			fs.StringVarP(&key, "key", "k", "", "only the value of `KEY`")
			fs.BoolVar(&noSession, "simple", false, "do not pair or start a session (only the values readable unpaired)")
			fs.StringVar(&password, "password", "", "backup `PASSWORD` (BACKUP mode, encrypted backups)")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) > 1 {
					return usageError("want at most one BACKUP")
				}
				if len(args) == 1 {
					return offlineInfo(ctx, e, args[0], password, asJSON)
				}
				mode := lockdown.PairIfNeeded
				t, cl, err := connectLockdown(ctx, e, &c, mode, noSession)
				if err != nil {
					return err
				}
				defer t.Close()
				defer cl.Close()
				v, err := cl.GetValue(ctx, domain, key)
				if err != nil {
					return err
				}
				return printValue(e, v, asJSON)
			}
		},
	})
}

// list returns the UDIDs of the phones the flags reach.
func (c *connFlags) list(ctx context.Context, e *env) ([]string, error) {
	kind, addr := c.mode(e)
	switch kind {
	case "fake":
		return listFake(ctx, e, c)
	case "usbmuxd":
		return listUsbmuxd(ctx, addr)
	}
	return listUSB(ctx, e)
}

// connectLockdown opens the phone and a lockdown client with a session
// (unless noSession), pairing according to mode.
func connectLockdown(ctx context.Context, e *env, c *connFlags, mode lockdown.PairMode, noSession bool) (*target, *lockdown.Client, error) {
	t, err := c.open(ctx, e)
	if err != nil {
		return nil, nil, err
	}
	opts := &lockdown.ConnectOptions{Pair: mode, NoSession: noSession}
	if mode != lockdown.PairNever {
		if rec, err := t.Store.LoadPairRecord(ctx, t.UDID); mode == lockdown.PairAlways || errors.Is(err, pairrecord.ErrNotFound) || rec == nil {
			fmt.Fprintln(e.stderr, "pairing: if the phone asks \"Trust This Computer?\", tap Trust and enter the passcode")
		}
	}
	cl, err := lockdown.Connect(ctx, t.Dialer, t.UDID, t.Store, opts)
	if err != nil {
		t.Close()
		return nil, nil, err
	}
	return t, cl, nil
}

// printValue prints a lockdown value as JSON, or as "Key: value" lines
// (ideviceinfo's style) for dicts and plain text otherwise.
func printValue(e *env, v any, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(jsonable(v))
	}
	if m, ok := v.(map[string]any); ok {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(e.stdout, "%s: %s\n", k, scalarText(m[k]))
		}
		return nil
	}
	fmt.Fprintln(e.stdout, scalarText(v))
	return nil
}

// scalarText renders one value on a line; nested values become compact JSON.
func scalarText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		if isText(x) {
			return strings.TrimSpace(string(x))
		}
		return fmt.Sprintf("<%d bytes>", len(x))
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	case map[string]any, []any:
		b, err := json.Marshal(jsonable(x))
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
	return fmt.Sprint(v)
}

func isText(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 && c != '\n' && c != '\r' && c != '\t') || c > 0x7e {
			return false
		}
	}
	return true
}

// jsonable converts plist values into what encoding/json prints well:
// data becomes base64 (text data, like PEM keys, stays text), UIDs numbers.
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, y := range x {
			out[k] = jsonable(y)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, y := range x {
			out[i] = jsonable(y)
		}
		return out
	case []byte:
		if isText(x) {
			return string(x)
		}
		return x
	case plist.UID:
		return uint64(x)
	}
	return v
}
