// Package usbemu presents a fake phone as an emulated USB device.
//
// The USB side is emulated by umockdev (Debian packages umockdev,
// gir1.2-umockdev-1.0, python3-gi): the project's own Python handler,
// usbbus.py in this directory, answers every usbdevfs ioctl a libusb host
// (our gousb adapter, Debian's usbmuxd) makes on the emulated
// /dev/bus/usb node. The handler plays a USB bus: it listens on a UNIX
// stream socket, and every connection to it is one phone plugged into a
// port. Closing the connection unplugs the phone.
//
// The phone logic stays in Go. This package speaks the bus protocol
// (bus.go): the phone first describes itself (descriptors and strings built
// from an Identity, descriptor.go), then every bulk transfer on the mux
// interface travels as one frame: each bulk-OUT URB the host submits becomes
// one frame to Go, each device→host transfer one frame to Python.
//
// Plug connects a phone to the bus and returns a Device. Its host sessions
// (Accept) are usbmux links that fakedevice/devmux serves directly; a new
// session starts whenever a host starts the mux over with a VERSION packet
// (usbmuxd restarted, or another host program took the phone). ServeUSB
// instead carries a phone that hands out links itself — fakedevice's
// (*Device).Connect — giving each host session a fresh link.
//
// The Python side is usbbus.py (the bus: plug, unplug, carrying frames) on
// top of usbdevfs.py (the usbdevfs ioctls of one device). run_tests.sh runs
// everything in CI: gousb, our usbmux/usb adapter and cmd/ibackup, and
// Debian's usbmuxd with libimobiledevice's tools, against emulated phones.
//
// USB semantics are kept where a host can see them (usb-usbmux-lockdown.md
// §1.5, corrections.md M-a.4): the device's USB stack ends a host→device
// transfer only at a short packet or a zero-length packet, so a host that
// forgets its ZLP gets two mux packets glued together, as on a real phone;
// the handler ends every device→host transfer with a short packet or a ZLP.
package usbemu
