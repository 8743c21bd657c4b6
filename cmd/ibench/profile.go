package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// profileHook is compiled into the profiling build of ibackup only (through
// go build -overlay); cmd/ibackup itself is not changed. It takes a hidden
// first argument --ibench-cpuprofile=FILE off the command line, profiles the
// whole run and writes the profile when main exits.
const profileHook = `package main

import (
	"os"
	"runtime/pprof"
	"strings"
)

var ibenchProfile *os.File

func init() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "--ibench-cpuprofile=") {
		f, err := os.Create(strings.TrimPrefix(os.Args[1], "--ibench-cpuprofile="))
		if err == nil && pprof.StartCPUProfile(f) == nil {
			ibenchProfile = f
		}
		os.Args = append(os.Args[:1], os.Args[2:]...)
	}
}

func ibenchExit(code int) {
	if ibenchProfile != nil {
		pprof.StopCPUProfile()
		ibenchProfile.Close()
	}
	os.Exit(code)
}
`

// profileArg is the hidden argument the profiling build understands.
const profileArg = "--ibench-cpuprofile="

// writeProfileOverlay writes the overlay files into dir and returns the
// overlay JSON path for go build -overlay.
func writeProfileOverlay(root, dir string) (string, error) {
	mainPath := filepath.Join(root, "cmd", "ibackup", "main.go")
	src, err := os.ReadFile(mainPath)
	if err != nil {
		return "", err
	}
	// main() ends with os.Exit(code); route it through ibenchExit.
	const exit = "\tos.Exit(code)\n}"
	if strings.Count(string(src), exit) != 1 {
		return "", fmt.Errorf("profiling: cmd/ibackup/main.go no longer ends main with os.Exit(code); update cmd/ibench/profile.go")
	}
	patched := strings.Replace(string(src), exit, "\tibenchExit(code)\n}", 1)
	newMain := filepath.Join(dir, "main.go")
	hook := filepath.Join(dir, "zz_ibench_profile.go")
	if err := os.WriteFile(newMain, []byte(patched), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(hook, []byte(profileHook), 0o644); err != nil {
		return "", err
	}
	ov, err := json.Marshal(map[string]map[string]string{"Replace": {
		mainPath: newMain,
		filepath.Join(root, "cmd", "ibackup", "zz_ibench_profile.go"): hook,
	}})
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "overlay.json")
	return p, os.WriteFile(p, ov, 0o644)
}
