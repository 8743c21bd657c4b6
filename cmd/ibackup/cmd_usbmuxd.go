package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/ibackup/ibackup/fakedevice"
	"github.com/ibackup/ibackup/lockdown/pairrecord"
	"github.com/ibackup/ibackup/usbmux/usbmuxd"
	"github.com/spf13/pflag"
)

// appleMuxProductID is the USB product ID reported for simulated phones
// (usb-usbmux-lockdown.md §7.1).
const appleMuxProductID = 0x12a8

func init() {
	register(&command{
		name:  "usbmuxd",
		short: "run a usbmuxd-compatible daemon (real USB phones, or simulated ones with --fake-dir)",
		long: `Serves the usbmuxd socket protocol, so libimobiledevice tools, pymobiledevice3 and others
can use the phones:

  ibackup usbmuxd --socket /tmp/mux.sock --fake-dir ./phones &
  USBMUXD_SOCKET_ADDRESS=UNIX:/tmp/mux.sock idevice_id -l

With --fake-dir, phones added to or removed from DIR are attached and detached while the
daemon runs. Pair records live in --pair-dir.`,
		setup: func(fs *pflag.FlagSet) func(context.Context, *env, []string) error {
			var socket, fakeDir, pairDir string
			var faults []string
			var verbose bool
			fs.StringVar(&socket, "socket", defaultUsbmuxdAddr, "listen on `ADDR` (UNIX:/path, a path, or HOST:PORT)")
			fs.StringVar(&fakeDir, "fake-dir", "", "serve the simulated phones in `DIR` instead of USB (a default phone is created if DIR is empty)")
			fs.StringVar(&pairDir, "pair-dir", "", "pair record `DIR` (default /var/lib/lockdown; DIR/.lockdown with --fake-dir)")
			fs.StringArrayVar(&faults, "fake-fault", nil, "with --fake-dir: make every phone show `FAULT` (repeatable; 'ibackup faults')")
			fs.BoolVarP(&verbose, "verbose", "v", false, "log debug messages to stderr")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 0 {
					return usageError("usbmuxd takes no arguments")
				}
				level := slog.LevelInfo
				if verbose {
					level = slog.LevelDebug
				}
				log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
				if fakeDir == "" {
					if len(faults) > 0 {
						return usageError("--fake-fault needs --fake-dir")
					}
					return serveUSB(ctx, e, log, socket, pairDir)
				}
				f, err := fakedevice.ParseFaults(faults)
				if err != nil {
					return usageError("%v", err)
				}
				if pairDir == "" {
					pairDir = filepath.Join(fakeDir, ".lockdown")
				}
				return serveFake(ctx, e, log, socket, fakeDir, pairDir, f)
			}
		},
	})
}

// serveFake serves the phones of dir through a usbmuxd socket until ctx ends.
func serveFake(ctx context.Context, e *env, log *slog.Logger, socket, dir, pairDir string, faults fakedevice.Faults) error {
	if _, err := ensureFakePhones(e, dir); err != nil {
		return err
	}
	if err := os.MkdirAll(pairDir, 0o700); err != nil {
		return fmt.Errorf("pair record directory: %w", err)
	}
	set := usbmuxd.NewDeviceSet()
	srv := usbmuxd.NewServer(set, &usbmuxd.Options{Records: pairrecord.Dir{Path: pairDir}, Logger: log})
	l, err := usbmuxd.Listen(socket)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	farm := fakedevice.NewFarm(dir, fakedevice.FarmOptions{Device: fakedevice.Options{Faults: faults, Logger: log}, Logger: log})
	farmDone := make(chan error, 1)
	go func() {
		var loc uint32
		farmDone <- farm.Run(ctx, func(a *fakedevice.Attached) {
			loc++
			d, err := set.Add(usbmuxd.Device{UDID: a.UDID, ProductID: appleMuxProductID, LocationID: loc << 16}, a.Mux.Dial)
			if err != nil {
				log.Warn("attach failed", "udid", a.UDID, "err", err)
				return
			}
			log.Info("attached simulated phone", "udid", a.UDID, "id", d.ID)
		}, func(a *fakedevice.Attached) {
			if set.Remove(a.UDID) {
				log.Info("detached simulated phone", "udid", a.UDID)
			}
		})
	}()
	log.Info("usbmuxd listening", "socket", socket, "phones", dir, "pair-dir", pairDir)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ctx, l) }()
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	cancel()
	_ = srv.Close()
	if err == nil {
		err = <-serveErr
	}
	<-farmDone
	if errors.Is(err, usbmuxd.ErrServerClosed) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
