// Command faultsuite runs the crash and fault suite (package
// fakedevice/faultsuite) against a freshly built ibackup and prints one line
// per case and a final "N passed, N failed"; it exits 1 when a case failed
// and 2 when the suite could not start.
//
//	go run ./fakedevice/faultsuite/cmd [--seed N] [--kills N] [--timeout D]
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ibackup/ibackup/fakedevice/faultsuite"
	"github.com/spf13/pflag"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		seed    = pflag.Uint64("seed", 1, "seed for the kill moments and phone changes")
		kills   = pflag.Int("kills", 20, "number of SIGKILL moments")
		timeout = pflag.Duration("timeout", 20*time.Second, "longest any ibackup command may run (longer is a hang)")
		bin     = pflag.String("ibackup", "", "test this ibackup binary instead of building ./cmd/ibackup")
		work    = pflag.String("work", "", "scratch directory (default a new temporary one, removed afterwards)")
	)
	pflag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "faultsuite:", err)
		return 2
	}
	dir := *work
	if dir == "" {
		d, err := os.MkdirTemp("", "faultsuite-")
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	if *bin == "" {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		mod := strings.TrimSpace(string(out))
		if err != nil || mod == "" || mod == os.DevNull {
			return fail(fmt.Errorf("run from inside the ibackup module (go env GOMOD: %v)", err))
		}
		if *bin, err = faultsuite.Build(ctx, filepath.Dir(mod), dir); err != nil {
			return fail(err)
		}
	}
	start := time.Now()
	res, err := faultsuite.Run(ctx, faultsuite.Config{
		Ibackup: *bin, Work: dir, Seed: *seed, Kills: *kills, Timeout: *timeout, Out: os.Stdout,
	})
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(os.Stderr, "faultsuite: %d cases in %v\n", len(res), time.Since(start).Round(time.Second))
	for _, r := range res {
		if r.Err != nil {
			return 1
		}
	}
	return 0
}
