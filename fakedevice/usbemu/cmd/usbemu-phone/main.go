// Command usbemu-phone plugs a fake phone into the emulated USB bus of
// fakedevice/usbemu/usbbus.py and serves it until it is told to stop
// (SIGINT/SIGTERM unplugs it) or the bus unplugs it.
//
//	usbemu-phone [-bus SOCK] -phone DIR/<UDID>       a stored phone (fakedevice.Open + Connect)
//	usbemu-phone [-bus SOCK] -new DIR [-profile P] [-seed N] [-files N] [-size BYTES]
//	                                                  create the phone in DIR first (if absent), then serve it
//	usbemu-phone [-bus SOCK] -echo -udid UDID        a mux-only phone: devmux with an echo service on
//	                                                  port 7777 and a byte source on 7778 (test services)
//	usbemu-phone -print-hello [-udid UDID]           print the bus HELLO (descriptors, strings) as JSON
//
// -bus defaults to $USBEMU_BUS, which usbbus.py sets for the command it runs.
// The UDID of the plugged phone is printed on stdout once it is on the bus.
// This is the entry point a hidden `ibackup fake usb-bridge` verb can wrap.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/ibackup/ibackup/fakedevice"
	"github.com/ibackup/ibackup/fakedevice/phone"
	"github.com/ibackup/ibackup/fakedevice/usbemu"
)

func main() {
	bus := flag.String("bus", os.Getenv("USBEMU_BUS"), "bus socket of usbbus.py")
	phoneDir := flag.String("phone", "", "stored phone directory DIR/<UDID>")
	newDir := flag.String("new", "", "create a phone in this directory (unless it exists) and serve it")
	prof := flag.String("profile", "", "profile for -new (default: fakedevice's default)")
	seed := flag.Int64("seed", 1, "seed for -new")
	files := flag.Int("files", 50, "number of files for -new")
	size := flag.Int64("size", 1<<20, "content size in bytes for -new")
	echo := flag.Bool("echo", false, "mux-only phone with test services on ports 7777 (echo) and 7778 (source)")
	udid := flag.String("udid", "00008030-001A2B3C4D5E6F70", "UDID of the -echo phone")
	printHello := flag.Bool("print-hello", false, "print the bus HELLO of the -udid phone as JSON and exit")
	flag.Parse()
	log.SetPrefix("usbemu-phone: ")
	log.SetFlags(0)
	if *printHello {
		h, err := usbemu.NewHello(usbemu.Identity{UDID: *udid})
		if err != nil {
			log.Fatal(err)
		}
		if err := json.NewEncoder(os.Stdout).Encode(h); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *bus == "" {
		log.Fatal("no bus: give -bus or run under usbbus.py")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	conn, err := net.Dial("unix", *bus)
	if err != nil {
		log.Fatal(err)
	}
	switch {
	case *echo:
		err = serveEcho(ctx, conn, *udid)
	case *newDir != "":
		dir, cerr := create(*newDir, phone.CreateOptions{Profile: *prof, Seed: *seed, Files: *files, Size: *size})
		if cerr != nil {
			log.Fatal(cerr)
		}
		err = serveStored(ctx, conn, dir)
	case *phoneDir != "":
		err = serveStored(ctx, conn, *phoneDir)
	default:
		log.Fatal("give -phone, -new or -echo")
	}
	if err != nil && !errors.Is(err, usbemu.ErrUnplugged) {
		log.Fatal(err)
	}
}

// create makes the phone unless a phone with the same identity exists, and
// returns its directory.
func create(dir string, opts phone.CreateOptions) (string, error) {
	p, err := phone.Create(dir, opts)
	if err == nil {
		return p.Dir, nil
	}
	// Already there? Same seed and profile give the same UDID.
	phones, lerr := phone.List(dir)
	if lerr != nil || len(phones) != 1 {
		return "", err
	}
	return phones[0].Dir, nil
}

// serveStored serves a stored phone with every fake service; each host
// session gets a fresh link from Connect.
func serveStored(ctx context.Context, conn net.Conn, dir string) error {
	dev, err := fakedevice.Open(filepath.Clean(dir), fakedevice.Options{})
	if err != nil {
		return err
	}
	defer dev.Close()
	fmt.Println(dev.UDID())
	connect := func(ctx context.Context) (usbemu.Link, error) { return dev.Connect(ctx) }
	return usbemu.ServeUSB(ctx, conn, usbemu.Identity{UDID: dev.UDID()}, connect, nil)
}

// serveEcho plugs a mux-only phone whose sessions are served by devmux
// directly (no in-memory link in between).
func serveEcho(ctx context.Context, conn net.Conn, udid string) error {
	d, err := usbemu.Plug(ctx, conn, usbemu.Identity{UDID: udid}, nil)
	if err != nil {
		return err
	}
	defer d.Close()
	stop := context.AfterFunc(ctx, func() { _ = d.Close() })
	defer stop()
	fmt.Println(udid)
	for {
		s, err := d.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := usbemu.ServeTestServices(ctx, s); err != nil && ctx.Err() == nil && !errors.Is(err, io.EOF) {
			log.Printf("session: %v", err)
		}
	}
}
