//go:build !libusb

package main

import (
	"context"
	"errors"
	"log/slog"
)

// errNoUSB explains how to get direct USB support (usbmux issue item 1).
var errNoUSB = errors.New("built without direct USB support: install libusb-1.0-0-dev and build with `go build -tags libusb ./cmd/ibackup`, or use --usbmuxd / --fake-dir")

// openUSB is unavailable in builds without the libusb adapter.
func openUSB(ctx context.Context, e *env, c *connFlags) (*target, error) {
	return nil, errNoUSB
}

// listUSB is unavailable in builds without the libusb adapter.
func listUSB(ctx context.Context, e *env) ([]string, error) {
	return nil, errNoUSB
}

// serveUSB is unavailable in builds without the libusb adapter.
func serveUSB(ctx context.Context, e *env, log *slog.Logger, socket, pairDir string) error {
	return errNoUSB
}
