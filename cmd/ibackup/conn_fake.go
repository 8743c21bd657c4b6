package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/ibackup/ibackup/fakedevice"
	"github.com/ibackup/ibackup/fakedevice/phone"
	"github.com/ibackup/ibackup/usbmux"
)

// ensureFakePhones makes sure DIR holds at least one simulated phone: on
// first use (missing or empty DIR) it creates the built-in default phone
// and says so, so `ibackup backup --fake-dir ./demo-phone ./backups` works
// on a fresh machine.
func ensureFakePhones(e *env, dir string) ([]*phone.Phone, error) {
	ps, err := phone.List(dir)
	if err != nil {
		return nil, err
	}
	if len(ps) > 0 {
		return ps, nil
	}
	p, err := phone.Create(dir, phone.CreateOptions{Seed: 1})
	if err != nil {
		return nil, err
	}
	if err := describePhone(e, p, dir+" had no simulated phone; created"); err != nil {
		return nil, err
	}
	return []*phone.Phone{p}, nil
}

// listFake lists the simulated phones in --fake-dir.
func listFake(ctx context.Context, e *env, c *connFlags) ([]string, error) {
	ps, err := ensureFakePhones(e, c.fakeDir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range ps {
		out = append(out, p.UDID())
	}
	return out, nil
}

// openFake plugs the chosen simulated phone into an in-memory USB link and
// runs our host mux on it.
func openFake(ctx context.Context, e *env, c *connFlags) (*target, error) {
	ps, err := ensureFakePhones(e, c.fakeDir)
	if err != nil {
		return nil, err
	}
	var udids []string
	for _, p := range ps {
		udids = append(udids, p.UDID())
	}
	udid, err := chooseUDID(c.udid, udids)
	if err != nil {
		return nil, err
	}
	faults, err := fakedevice.ParseFaults(c.faults)
	if err != nil {
		return nil, usageError("%v", err)
	}
	dev, err := fakedevice.Open(filepath.Join(c.fakeDir, udid), fakedevice.Options{Faults: faults, Logger: c.logger(e)})
	if err != nil {
		return nil, err
	}
	link, err := dev.Connect(ctx)
	if err != nil {
		dev.Close()
		return nil, err
	}
	mux, err := usbmux.NewMux(ctx, link, nil)
	if err != nil {
		link.Close()
		dev.Close()
		return nil, fmt.Errorf("simulated phone: %w", err)
	}
	store, err := c.pairStore(filepath.Join(c.fakeDir, ".lockdown"))
	if err != nil {
		mux.Close()
		dev.Close()
		return nil, err
	}
	return &target{UDID: udid, Dialer: mux, Store: store, close: func() error {
		err := mux.Close()
		link.Close()
		dev.Close()
		return err
	}, unplug: func() { link.Close() }}, nil
}
