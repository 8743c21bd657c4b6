//go:build libusb

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/ibackup/ibackup/lockdown/pairrecord"
	"github.com/ibackup/ibackup/usbmux"
	"github.com/ibackup/ibackup/usbmux/usb"
	"github.com/ibackup/ibackup/usbmux/usbmuxd"
)

// openUSB talks to the phone directly over libusb (no daemon). Pair
// records live in --pair-dir (default ~/.config/ibackup/lockdown).
func openUSB(ctx context.Context, e *env, c *connFlags) (*target, error) {
	uc := usb.NewContext()
	links, err := uc.OpenAll()
	if len(links) == 0 {
		uc.Close()
		if err != nil {
			return nil, fmt.Errorf("%w on USB: %w", errNoDevice, err)
		}
		return nil, fmt.Errorf("%w on USB (is the phone plugged in and unlocked? is a usbmuxd daemon holding it? then use --usbmuxd)", errNoDevice)
	}
	var udids []string
	for _, l := range links {
		udids = append(udids, l.Info().UDID)
	}
	closeAll := func(keep *usb.Link) {
		for _, l := range links {
			if l != keep {
				l.Close()
			}
		}
	}
	udid, err := chooseUDID(c.udid, udids)
	if err != nil {
		closeAll(nil)
		uc.Close()
		return nil, err
	}
	var link *usb.Link
	for _, l := range links {
		if l.Info().UDID == udid {
			link = l
		}
	}
	closeAll(link)
	mux, err := usbmux.NewMux(ctx, link, nil)
	if err != nil {
		uc.Close()
		return nil, err
	}
	store, err := c.pairStore(userPairDir())
	if err != nil {
		mux.Close()
		uc.Close()
		return nil, err
	}
	return &target{UDID: udid, Dialer: mux, Store: store, close: func() error {
		err := mux.Close()
		uc.Close()
		return err
	}}, nil
}

// listUSB lists the phones on USB.
func listUSB(ctx context.Context, e *env) ([]string, error) {
	uc := usb.NewContext()
	defer uc.Close()
	links, err := uc.OpenAll()
	var out []string
	for _, l := range links {
		out = append(out, l.Info().UDID)
		l.Close()
	}
	if len(out) == 0 && err != nil {
		return nil, err
	}
	return out, nil
}

// serveUSB runs the daemon for real USB phones with hot-plug.
func serveUSB(ctx context.Context, e *env, log *slog.Logger, socket, pairDir string) error {
	if pairDir == "" {
		pairDir = pairrecord.DefaultDir
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
	uc := usb.NewContext()
	defer uc.Close()
	muxes := map[*usb.Link]*usbmux.Mux{}
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		_ = uc.Watch(ctx, time.Second, func(ev usb.Event) {
			switch {
			case ev.Err != nil:
				log.Warn("usb device could not be opened", "err", ev.Err)
			case ev.Attached:
				m, err := usbmux.NewMux(ctx, ev.Link, &usbmux.Options{Logger: log})
				if err != nil {
					log.Warn("mux handshake failed", "udid", ev.Info.UDID, "err", err)
					return
				}
				muxes[ev.Link] = m
				if _, err := set.Add(usbmuxd.Device{UDID: ev.Info.UDID, ProductID: ev.Info.ProductID,
					LocationID: ev.Info.LocationID, Speed: uint64(ev.Info.SpeedBits)}, m.Dial); err != nil {
					log.Warn("attach failed", "udid", ev.Info.UDID, "err", err)
				}
				log.Info("attached", "udid", ev.Info.UDID)
			default:
				set.Remove(ev.Info.UDID)
				if m := muxes[ev.Link]; m != nil {
					m.Close()
					delete(muxes, ev.Link)
				}
				log.Info("detached", "udid", ev.Info.UDID)
			}
		})
		for _, m := range muxes {
			m.Close()
		}
	}()
	log.Info("usbmuxd listening", "socket", socket, "pair-dir", pairDir)
	err = srv.Serve(ctx, l)
	cancel()
	<-watchDone
	if errors.Is(err, usbmuxd.ErrServerClosed) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
