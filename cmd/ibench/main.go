// Command ibench measures ibackup against libimobiledevice's idevicebackup2
// on the same simulated phones, served by one `ibackup usbmuxd --fake-dir`
// daemon, and prints one line per figure as a ratio with its goal beside it
// (issue 11):
//
//	go run ./cmd/ibench           # full sizes (long: 1,000,000-file phone)
//	go run ./cmd/ibench --quick   # every size lowered, < 3 minutes (CI)
//
// The client processes are measured from their rusage (user + system CPU,
// peak resident set) as reported by os.ProcessState; the daemon and the
// simulated phones it serves run in a separate process and are not counted.
// --cpuprofile DIR builds a profiling ibackup (through go build -overlay,
// cmd/ibackup is not touched) and writes one CPU profile per backup run.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

// scale holds every size the benchmark uses.
type scale struct {
	SmallFiles int   // CPU figure, many small files
	SmallSize  int64 // their total bytes
	LargeFiles int   // CPU figure, large files
	LargeSize  int64
	RateLimit  int64 // single phone link limit, bytes/s
	RateFiles  int
	RateSize   int64
	IncrFiles  int // incremental figure
	IncrSize   int64
	FarmPhones int // concurrent phones
	FarmRate   int64
	FarmFiles  int
	FarmSize   int64
	MemFiles   int // peak memory figure
}

const mib = 1 << 20

var (
	fullScale = scale{
		SmallFiles: 20000, SmallSize: 80 * mib,
		LargeFiles: 16, LargeSize: 1024 * mib,
		RateLimit: 40 * mib, RateFiles: 10, RateSize: 400 * mib,
		IncrFiles: 100000, IncrSize: 200 * mib,
		FarmPhones: 8, FarmRate: 30 * mib, FarmFiles: 10, FarmSize: 300 * mib,
		MemFiles: 1000000,
	}
	quickScale = scale{
		SmallFiles: 1000, SmallSize: 4 * mib,
		LargeFiles: 4, LargeSize: 128 * mib,
		RateLimit: 40 * mib, RateFiles: 4, RateSize: 80 * mib,
		IncrFiles: 2000, IncrSize: 4 * mib,
		FarmPhones: 8, FarmRate: 30 * mib, FarmFiles: 4, FarmSize: 60 * mib,
		MemFiles: 5000,
	}
)

// bench is one benchmark run.
type bench struct {
	sc      scale
	quick   bool
	work    string    // scratch directory
	ibackup string    // our binary
	idb2    string    // idevicebackup2, "" when not installed
	log     io.Writer // every command and its output
	out     io.Writer // the figures
	profDir string    // CPU profiles of our backups, "" = off
	nprof   int
	d       *daemon // the usbmuxd daemon serving every phone
	results []figure
}

func main() {
	os.Exit(mainErr())
}

func mainErr() int {
	var (
		quick    = pflag.Bool("quick", false, "lower every size so the run takes under 3 minutes")
		only     = pflag.String("only", "", "comma-separated figures to run (cpu-small,cpu-large,rate,incremental,farm,memory)")
		work     = pflag.String("work", "", "scratch directory (default a new temporary one, removed afterwards)")
		keep     = pflag.Bool("keep", false, "keep the scratch directory")
		memFiles = pflag.Int("mem-files", 0, "files on the memory-figure phone (default 1,000,000; 5,000 with --quick)")
		prof     = pflag.String("cpuprofile", "", "write a CPU profile of every ibackup backup run into DIR")
		prebuilt = pflag.String("ibackup", "", "use this ibackup binary instead of building ./cmd/ibackup (not with --cpuprofile)")
	)
	pflag.Parse()
	b := &bench{sc: fullScale, out: os.Stdout}
	if *quick {
		b.sc, b.quick = quickScale, true
	}
	if *memFiles > 0 {
		b.sc.MemFiles = *memFiles
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := b.setup(*work, *prof, *prebuilt); err != nil {
		fmt.Fprintln(os.Stderr, "ibench:", err)
		return 2
	}
	if !*keep && *work == "" {
		defer os.RemoveAll(b.work)
	}
	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			want[s] = true
		}
	}
	failed := b.runAll(ctx, want)
	_ = os.RemoveAll(filepath.Join(b.work, "out"))
	met := 0
	for _, f := range b.results {
		if f.met() {
			met++
		}
	}
	logNote := "--keep keeps the commands' log"
	if *keep || *work != "" {
		logNote = "log: " + filepath.Join(b.work, "ibench.log")
	}
	fmt.Fprintf(b.out, "%d of %d figures meet their goal; %d could not be measured (%s)\n",
		met, len(b.results), failed, logNote)
	if failed > 0 {
		return 1
	}
	return 0
}

// setup creates the scratch directory, builds ibackup and finds idevicebackup2.
func (b *bench) setup(work, prof, prebuilt string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if work == "" {
		if work, err = os.MkdirTemp("", "ibench-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	b.work, _ = filepath.Abs(work)
	logf, err := os.Create(filepath.Join(b.work, "ibench.log"))
	if err != nil {
		return err
	}
	b.log = logf
	if prof != "" {
		if b.profDir, err = filepath.Abs(prof); err != nil {
			return err
		}
		if err := os.MkdirAll(b.profDir, 0o755); err != nil {
			return err
		}
	}
	switch {
	case prebuilt != "" && prof != "":
		return errors.New("--cpuprofile needs the profiling build; leave out --ibackup")
	case prebuilt != "":
		if b.ibackup, err = filepath.Abs(prebuilt); err != nil {
			return err
		}
	default:
		fmt.Fprintf(b.out, "ibench: building ibackup; scratch %s\n", b.work)
		if b.ibackup, err = buildIbackup(root, b.work, prof != ""); err != nil {
			return err
		}
	}
	if p, err := exec.LookPath("idevicebackup2"); err == nil {
		b.idb2 = p
	} else {
		fmt.Fprintln(b.out, "ibench: idevicebackup2 not installed (Debian: libimobiledevice-utils); comparisons are skipped")
	}
	return nil
}

// runAll creates the phones, starts the daemon and measures every wanted
// figure. It returns how many figures could not be measured.
func (b *bench) runAll(ctx context.Context, want map[string]bool) int {
	on := func(name string) bool { return len(want) == 0 || want[name] }
	failed := 0
	fail := func(name string, err error) {
		failed++
		fmt.Fprintf(b.out, "%-12s ERROR: %v\n", name, err)
	}
	phones := filepath.Join(b.work, "phones")
	sc := b.sc
	var (
		small = &phoneSpec{Files: sc.SmallFiles, Size: sc.SmallSize, Seed: 101}
		large = &phoneSpec{Files: sc.LargeFiles, Size: sc.LargeSize, Seed: 102, Big: true}
		rated = &phoneSpec{Files: sc.RateFiles, Size: sc.RateSize, Rate: sc.RateLimit, Seed: 103, Big: true}
		incr  = &phoneSpec{Files: sc.IncrFiles, Size: sc.IncrSize, Seed: 104}
		mem   = &phoneSpec{Files: sc.MemFiles, Size: int64(sc.MemFiles) * 512, Seed: 105}
		farm  []*phoneSpec
	)
	for i := range sc.FarmPhones {
		farm = append(farm, &phoneSpec{Files: sc.FarmFiles, Size: sc.FarmSize, Rate: sc.FarmRate, Seed: 200 + int64(i), Big: true})
	}
	var specs []*phoneSpec
	add := func(name string, ps ...*phoneSpec) {
		if on(name) {
			specs = append(specs, ps...)
		}
	}
	add("cpu-small", small)
	add("cpu-large", large)
	add("rate", rated)
	add("incremental", incr)
	add("farm", farm...)
	add("memory", mem)
	if len(specs) == 0 {
		fail("ibench", errors.New("no figure selected (see --only)"))
		return failed
	}
	start := time.Now()
	var udids []string
	for _, p := range specs {
		if err := b.makePhone(ctx, phones, p); err != nil {
			fail("phones", err)
			return failed
		}
		udids = append(udids, p.udid)
	}
	fmt.Fprintf(b.out, "ibench: %d simulated phones made in %v\n", len(specs), time.Since(start).Round(time.Second))
	d, err := b.startDaemon(ctx, phones, udids)
	if err != nil {
		fail("usbmuxd", err)
		return failed
	}
	defer d.stop()
	b.d = d
	for _, p := range specs {
		if _, err := b.run(ctx, b.ibackup, nil, "pair", "--usbmuxd", d.socket, "-u", p.udid); err != nil {
			fail("pair", err)
			return failed
		}
	}
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"cpu-small", func(ctx context.Context) error { return b.cpuFigure(ctx, "cpu-small", small, 2.0) }},
		{"cpu-large", func(ctx context.Context) error { return b.cpuFigure(ctx, "cpu-large", large, 1.5) }},
		{"rate", func(ctx context.Context) error { return b.rateFigure(ctx, rated) }},
		{"incremental", func(ctx context.Context) error { return b.incrFigure(ctx, incr) }},
		{"farm", func(ctx context.Context) error { return b.farmFigure(ctx, farm) }},
		{"memory", func(ctx context.Context) error { return b.memFigure(ctx, mem) }},
	}
	for _, s := range steps {
		if !on(s.name) {
			continue
		}
		if err := s.fn(ctx); err != nil {
			fail(s.name, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return failed
}
