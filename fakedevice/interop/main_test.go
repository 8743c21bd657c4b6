package interop

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// debianTools are the libimobiledevice-utils 1.3.0 programs under test.
var debianTools = []string{"idevice_id", "ideviceinfo", "idevicepair", "idevicebackup2"}

// ibackupBin is the ibackup binary built once by TestMain ("" when the
// tests skip without building).
var ibackupBin string

// missingTool names the first Debian tool not on PATH ("" = all present).
var missingTool string

// TestMain builds cmd/ibackup once into a shared temporary directory, runs
// the tests and checks that no goroutine of the test process leaked.
func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	for _, n := range debianTools {
		if _, err := exec.LookPath(n); err != nil {
			missingTool = n
			break
		}
	}
	if missingTool == "" && !testing.Short() {
		dir, err := os.MkdirTemp("", "interop-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "interop:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		ibackupBin = filepath.Join(dir, "ibackup")
		if err := buildIbackup(ibackupBin); err != nil {
			fmt.Fprintln(os.Stderr, "interop:", err)
			return 1
		}
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "interop: leaked goroutines:", err)
			code = 1
		}
	}
	return code
}

// buildIbackup runs `go build -o out ./cmd/ibackup`: pure Go like the
// release, or with -race (which needs cgo) when the tests run with -race,
// so that the daemon is race-checked under the real clients' load.
func buildIbackup(out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("go toolchain not found: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args, cgo := []string{"build", "-o", out}, "CGO_ENABLED=0"
	if raceEnabled {
		args, cgo = append(args, "-race"), "CGO_ENABLED=1"
	}
	cmd := exec.CommandContext(ctx, goBin, append(args, "github.com/ibackup/ibackup/cmd/ibackup")...)
	cmd.Env = append(os.Environ(), cgo)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building ibackup: %w\n%s", err, b)
	}
	return nil
}

// requireTools skips the test when it cannot run against the Debian tools.
func requireTools(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("interop tests run external tools (not in -short mode)")
	}
	if missingTool != "" {
		t.Skipf("%s not installed (apt-get install libimobiledevice-utils)", missingTool)
	}
}
