package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// usage is what one finished child process cost: wall time, CPU time of the
// process itself (user + system from its rusage, children excluded since our
// clients start none) and its peak resident set.
type usage struct {
	Wall   time.Duration
	CPU    time.Duration
	MaxRSS int64 // bytes
}

// run starts one command and waits for it, returning its resource usage.
// Output goes to the log file; a non-zero exit is an error carrying the tail
// of that output.
func (b *bench) run(ctx context.Context, name string, env []string, args ...string) (usage, error) {
	return b.runTo(ctx, nil, name, env, args...)
}

// runTo is run with standard output also copied to stdout; io.Discard
// sends it nowhere (not even the log: used for huge listings).
func (b *bench) runTo(ctx context.Context, stdout io.Writer, name string, env []string, args ...string) (usage, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var tail tailBuffer
	switch stdout {
	case nil:
		cmd.Stdout = io.MultiWriter(b.log, &tail)
	case io.Discard:
		cmd.Stdout = io.Discard
	default:
		cmd.Stdout = io.MultiWriter(b.log, &tail, stdout)
	}
	cmd.Stderr = io.MultiWriter(b.log, &tail)
	cmd.WaitDelay = 5 * time.Second
	fmt.Fprintf(b.log, "\n$ %s %s\n", name, strings.Join(args, " "))
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	u := usage{Wall: wall}
	if ps := cmd.ProcessState; ps != nil {
		u.CPU = ps.UserTime() + ps.SystemTime()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			u.MaxRSS = ru.Maxrss * 1024 // Linux reports KiB
		}
	}
	fmt.Fprintf(b.log, "# wall %v cpu %v maxrss %d MiB\n", wall.Round(time.Millisecond), u.CPU.Round(time.Millisecond), u.MaxRSS>>20)
	if err != nil {
		return u, fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, tail.String())
	}
	return u, nil
}

// tailBuffer keeps the last few KiB written to it (for error messages).
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

// moduleRoot finds the directory of go.mod (ibench is run with `go run
// ./cmd/ibench` from inside the module).
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run ibench from inside the ibackup module (go run ./cmd/ibench)")
	}
	return filepath.Dir(mod), nil
}

// buildIbackup compiles cmd/ibackup into dir. With profiling on, a file is
// overlaid (go build -overlay; nothing is written into cmd/ibackup) that
// honours a hidden first argument --ibench-cpuprofile=FILE, and main.go's
// os.Exit is routed through a function that stops the profile first.
func buildIbackup(root, dir string, profiling bool) (string, error) {
	bin := filepath.Join(dir, "ibackup")
	args := []string{"build", "-o", bin}
	if profiling {
		ov, err := writeProfileOverlay(root, dir)
		if err != nil {
			return "", err
		}
		args = append(args, "-overlay", ov)
	}
	args = append(args, "./cmd/ibackup")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/ibackup: %w\n%s", err, out.String())
	}
	return bin, nil
}

// daemon is a running `ibackup usbmuxd --fake-dir`.
type daemon struct {
	cmd    *exec.Cmd
	socket string // UNIX:/path
	done   chan error
}

// startDaemon runs the usbmuxd daemon over the phones in dir and waits until
// every one of udids is listed.
func (b *bench) startDaemon(ctx context.Context, dir string, udids []string) (*daemon, error) {
	sock := filepath.Join(b.work, "mux.sock")
	_ = os.Remove(sock)
	d := &daemon{socket: "UNIX:" + sock, done: make(chan error, 1)}
	d.cmd = exec.Command(b.ibackup, "usbmuxd", "--socket", d.socket, "--fake-dir", dir,
		"--pair-dir", filepath.Join(b.work, "pairs"))
	logf, err := os.Create(filepath.Join(b.work, "daemon.log"))
	if err != nil {
		return nil, err
	}
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() { d.done <- d.cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ := exec.CommandContext(ctx, b.ibackup, "devices", "--usbmuxd", d.socket).Output()
		if hasAll(string(out), udids) {
			return d, nil
		}
		select {
		case err := <-d.done:
			return nil, fmt.Errorf("usbmuxd daemon exited: %v (see %s)", err, logf.Name())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("usbmuxd daemon did not list all %d phones within 60 s", len(udids))
		}
	}
}

// waitPhone waits until the daemon lists udid again (a phone whose link
// dropped is plugged in again at the next scan).
func (b *bench) waitPhone(ctx context.Context, d *daemon, udid string) error {
	for range 300 {
		out, _ := exec.CommandContext(ctx, b.ibackup, "devices", "--usbmuxd", d.socket).Output()
		if hasAll(string(out), []string{udid}) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("phone %s not listed by the daemon", udid)
}

func hasAll(out string, udids []string) bool {
	for _, u := range udids {
		if !strings.Contains(out, u) {
			return false
		}
	}
	return true
}

// stop ends the daemon (SIGTERM, then SIGKILL after 10 s) and waits for it.
func (d *daemon) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}
