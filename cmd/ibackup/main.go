// Command ibackup backs up, verifies and restores iPhones over USB, through
// a usbmuxd daemon, or against simulated phones (--fake-dir).
//
// The command stays thin: it resolves flags, environment and paths, and
// hands them to the libraries (STYLE.md rule 6, 19).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"

	"github.com/mattn/go-isatty"
	"github.com/spf13/pflag"
)

// env is what a command may touch of the outside world; tests replace it.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	// tty is true when stderr is a terminal (progress bars are drawn then).
	tty bool
}

// command is one verb. setup registers the verb's flags and returns the
// function that runs it with the remaining arguments.
type command struct {
	name  string
	args  string // usage after the name, e.g. "DIR"
	short string
	long  string
	setup func(fs *pflag.FlagSet) func(ctx context.Context, e *env, args []string) error
}

// exitError carries an exit code other than 1 (usage 2; verify 1/2).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError reports a command-line mistake (exit code 2).
func usageError(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

// commands lists every verb; filled by the cmd_*.go files' init functions so
// each verb lives next to its code.
var commands []*command

func register(c *command) { commands = append(commands, c) }

func findCommand(args []string) (*command, []string) {
	if len(args) == 0 {
		return nil, nil
	}
	// Two-word verbs ("fake new") first.
	if len(args) >= 2 {
		for _, c := range commands {
			if c.name == args[0]+" "+args[1] {
				return c, args[2:]
			}
		}
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c, args[1:]
		}
	}
	return nil, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	e := &env{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv,
		tty: isatty.IsTerminal(os.Stderr.Fd()),
	}
	code := run(ctx, e, os.Args[1:])
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit code.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c, _ := findCommand(args[1:]); c != nil {
				fmt.Fprint(e.stdout, commandHelp(c))
				return 0
			}
		}
		fmt.Fprint(e.stdout, mainHelp())
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "version" {
		fmt.Fprintln(e.stdout, "ibackup "+version)
		return 0
	}
	c, rest := findCommand(args)
	if c == nil {
		fmt.Fprintf(e.stderr, "ibackup: unknown command %q; run 'ibackup help'\n", strings.Join(args[:min(2, len(args))], " "))
		return 2
	}
	fs := newFlagSet(c)
	runFn := c.setup(fs)
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(e.stdout, commandHelp(c))
			return 0
		}
		fmt.Fprintf(e.stderr, "ibackup %s: %v\nrun 'ibackup %s --help' for usage\n", c.name, err, c.name)
		return 2
	}
	limitMemory(e, c)
	err := runFn(ctx, e, fs.Args())
	return report(e, c, err)
}

// memoryLimit is the Go runtime's soft memory limit for the commands that
// walk a whole backup, unless GOMEMLIMIT is set (issue 11). Near it the
// collector runs more often instead of letting garbage grow the heap to
// twice what is live (a backup of a million files keeps ~150 MiB of
// received-file table live). It is soft: a larger live heap still works,
// at some extra collector CPU time.
const memoryLimit = 200 << 20

// memoryBounded names the commands memoryLimit applies to; the daemons and
// the phone generator keep the runtime default.
var memoryBounded = map[string]bool{"backup": true, "restore": true, "verify": true, "repair": true, "ls": true, "extract": true}

func limitMemory(e *env, c *command) {
	if memoryBounded[c.name] && e.getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}

// report prints err with its plain-language hint and returns the exit code.
func report(e *env, c *command, err error) int {
	if err == nil {
		return 0
	}
	code := 1
	var xe *exitError
	if errors.As(err, &xe) {
		code = xe.code
		if xe.err == nil {
			return code
		}
	}
	fmt.Fprintf(e.stderr, "ibackup %s: %v\n", c.name, err)
	if h := hintOf(err); h != "" {
		fmt.Fprintf(e.stderr, "hint: %s\n", h)
	}
	if code == 2 && errors.As(err, &xe) && strings.Contains(c.args, " ") {
		fmt.Fprintf(e.stderr, "usage: ibackup %s %s\n", c.name, c.args)
	}
	return code
}

// hintOf returns the first plain-language hint any error in the chain
// offers (lockdown.Error, usbmuxd and mobilebackup2 errors implement Hint).
func hintOf(err error) string {
	for _, x := range flatten(err) {
		if h, ok := x.(interface{ Hint() string }); ok && h.Hint() != "" {
			return h.Hint()
		}
	}
	return ""
}

// flatten lists err and everything it wraps, depth first.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	out := []error{err}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		out = append(out, flatten(u.Unwrap())...)
	case interface{ Unwrap() []error }:
		for _, x := range u.Unwrap() {
			out = append(out, flatten(x)...)
		}
	}
	return out
}

// version is the tool version printed by --version.
const version = "0.1.0-dev"

func newFlagSet(c *command) *pflag.FlagSet {
	fs := pflag.NewFlagSet(c.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	return fs
}

// commandHelp renders the help of one verb (golden-tested).
func commandHelp(c *command) string {
	fs := newFlagSet(c)
	c.setup(fs)
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: ibackup %s", c.name)
	if c.args != "" {
		fmt.Fprintf(&b, " %s", c.args)
	}
	if fs.HasFlags() {
		b.WriteString(" [flags]")
	}
	fmt.Fprintf(&b, "\n\n%s\n", c.short)
	if c.long != "" {
		fmt.Fprintf(&b, "\n%s\n", strings.TrimSpace(c.long))
	}
	if fs.HasFlags() {
		fmt.Fprintf(&b, "\nFlags:\n%s", flagUsages(fs))
	}
	return b.String()
}

// mainHelp renders the overview (golden-tested).
func mainHelp() string {
	var b strings.Builder
	b.WriteString(`ibackup - back up, verify and restore iPhones (and simulated ones)

Usage: ibackup COMMAND [ARGS] [flags]

Start here (no phone needed):
  ibackup backup --fake-dir ./demo-phone ./backups

Commands:
`)
	cs := append([]*command(nil), commands...)
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(&b, "  %-18s %s\n", c.name, c.short)
	}
	b.WriteString(`
Connecting to a phone (device commands):
  default            direct USB (needs a build with -tags libusb)
  --usbmuxd ADDR     through a running usbmuxd (UNIX:/path or HOST:PORT; $USBMUXD_SOCKET_ADDRESS)
  --fake-dir DIR     simulated phones stored in DIR (created on first use)

Run 'ibackup help COMMAND' or 'ibackup COMMAND --help' for details.
`)
	return b.String()
}

// flagUsages formats the flags like pflag does, without pflag 1.1's
// "[=true|false]" after every boolean flag.
func flagUsages(fs *pflag.FlagSet) string {
	type row struct{ left, usage string }
	var rows []row
	width := 0
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		left := "      --" + f.Name
		if f.Shorthand != "" {
			left = "  -" + f.Shorthand + ", --" + f.Name
		}
		varname, usage := pflag.UnquoteUsage(f)
		if f.Value.Type() != "bool" && varname != "" {
			left += " " + varname
		}
		if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "[]" {
			if f.Value.Type() == "string" {
				d = fmt.Sprintf("%q", d)
			}
			usage += " (default " + d + ")"
		}
		width = max(width, len(left))
		rows = append(rows, row{left, usage})
	})
	var b strings.Builder
	for _, r := range rows {
		for i, line := range strings.Split(r.usage, "\n") {
			pad := r.left
			if i > 0 {
				pad = ""
			}
			fmt.Fprintf(&b, "%-*s   %s\n", width, pad, line)
		}
	}
	return b.String()
}

// hintError adds a plain-language hint to an error the CLI produced.
type hintError struct {
	err  error
	hint string
}

func (h *hintError) Error() string { return h.err.Error() }
func (h *hintError) Unwrap() error { return h.err }

// Hint returns the advice.
func (h *hintError) Hint() string { return h.hint }
