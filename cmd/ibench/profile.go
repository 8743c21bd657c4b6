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
// first arguments --ibench-cpuprofile=FILE (profiles the whole run, written
// when main exits) and --ibench-memprofile=FILE (heap profile rewritten at
// every new peak of the heap in use) off the command line.
const profileHook = `package main

import (
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"
)

var ibenchProfile *os.File

func init() {
	for len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "--ibench-") {
		arg := os.Args[1]
		os.Args = append(os.Args[:1], os.Args[2:]...)
		if p, ok := strings.CutPrefix(arg, "--ibench-cpuprofile="); ok {
			f, err := os.Create(p)
			if err == nil && pprof.StartCPUProfile(f) == nil {
				ibenchProfile = f
			}
		}
		if p, ok := strings.CutPrefix(arg, "--ibench-memprofile="); ok {
			go ibenchHeapPeaks(p)
		}
	}
}

// ibenchHeapPeaks writes a heap profile whenever the heap in use reaches a
// new high, so the file shows what was live near the peak.
func ibenchHeapPeaks(path string) {
	var peak uint64
	for range time.Tick(500 * time.Millisecond) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse <= peak+peak/10 {
			continue
		}
		peak = ms.HeapInuse
		if f, err := os.Create(path); err == nil {
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
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

// Hidden first arguments the profiling build understands.
const (
	profileArg    = "--ibench-cpuprofile="
	memProfileArg = "--ibench-memprofile="
)

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
