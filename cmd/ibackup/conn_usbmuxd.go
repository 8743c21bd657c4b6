package main

import (
	"context"
	"fmt"

	"github.com/ibackup/ibackup/usbmux/usbmuxd"
)

// defaultUsbmuxdAddr is where usbmuxd listens on Linux and macOS (§3.1).
const defaultUsbmuxdAddr = "UNIX:/var/run/usbmuxd"

// usbmuxdClient returns a client for addr ("" = the default socket).
func usbmuxdClient(addr string) (*usbmuxd.Client, error) {
	if addr == "" {
		addr = defaultUsbmuxdAddr
	}
	return usbmuxd.NewClient(addr, nil)
}

// openUsbmuxd reaches the phone through a running usbmuxd; pair records
// are the daemon's, shared with libimobiledevice tools.
func openUsbmuxd(ctx context.Context, e *env, c *connFlags, addr string) (*target, error) {
	cl, err := usbmuxdClient(addr)
	if err != nil {
		return nil, err
	}
	devs, err := cl.Devices(ctx)
	if err != nil {
		return nil, daemonHint(addr, err)
	}
	var udids []string
	for _, d := range devs {
		udids = append(udids, d.UDID)
	}
	udid, err := chooseUDID(c.udid, udids)
	if err != nil {
		return nil, err
	}
	return &target{UDID: udid, Dialer: cl.Dialer(udid), Store: cl.PairRecords()}, nil
}

// listUsbmuxd lists the UDIDs the daemon sees.
func listUsbmuxd(ctx context.Context, addr string) ([]string, error) {
	cl, err := usbmuxdClient(addr)
	if err != nil {
		return nil, err
	}
	devs, err := cl.Devices(ctx)
	if err != nil {
		return nil, daemonHint(addr, err)
	}
	var out []string
	for _, d := range devs {
		out = append(out, d.UDID)
	}
	return out, nil
}

// daemonHint explains a daemon that cannot be reached.
func daemonHint(addr string, err error) error {
	return &hintError{err: fmt.Errorf("usbmuxd at %s: %w", addr, err),
		hint: "is a usbmuxd daemon running there? start one with 'ibackup usbmuxd --socket ADDR', or use --fake-dir DIR for a simulated phone"}
}
