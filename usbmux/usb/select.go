//go:build libusb

// Package usb is the direct-USB Link for usbmux, on libusb through gousb. It is the only cgo code
// in the project; every file needs the build tag "libusb", so default builds skip it. It finds
// Apple devices with a mux interface, picks the configuration the way usbmuxd does, turns the
// serial number into the UDID, keeps three 16 KiB bulk reads in flight, and sends a zero-length
// packet after writes that are a multiple of wMaxPacketSize (usb-usbmux-lockdown.md §1).
//
// This file holds the pure logic (no gousb types), testable without a device.
package usb

// AppleVendor is Apple's USB vendor id (§1.1).
const AppleVendor = 0x05AC

// Read side parameters (§1.5): USB_MRU bytes per read, NUM_RX_LOOPS reads in flight.
const (
	ReadSize    = 16384
	ReadsQueued = 3
)

// IsMuxProduct reports whether usbmuxd (HEAD) handles product id pid of vendor 0x05AC: normal
// mode 0x1290–0x12AF, the T2 coprocessor 0x8600, and 0x1901–0x1905 (§1.1; 1.1.1 lacks the last
// range, corrections.md V3). Recovery and DFU ids are not mux devices.
func IsMuxProduct(pid uint16) bool {
	return (pid >= 0x1290 && pid <= 0x12AF) || pid == 0x8600 || (pid >= 0x1901 && pid <= 0x1905)
}

// UDIDFromSerial turns a USB serial string into the UDID used above USB: a 24-character serial
// (8 hex chip id + 16 hex ECID) gets a hyphen after the 8th character; anything else, such as
// a 40-character SHA-1 style serial, is used unchanged (§1.2).
func UDIDFromSerial(serial string) string {
	if len(serial) == 24 {
		return serial[:8] + "-" + serial[8:]
	}
	return serial
}

// Endpoint describes one endpoint of an interface setting.
type Endpoint struct {
	Address   uint8 // with the direction bit 0x80 for IN
	Bulk      bool
	MaxPacket int
}

// In reports whether the endpoint is device-to-host.
func (e Endpoint) In() bool { return e.Address&0x80 != 0 }

// Number is the endpoint number without the direction bit.
func (e Endpoint) Number() int { return int(e.Address & 0x0F) }

// Setting is alternate setting 0 of one interface.
type Setting struct {
	Interface                 int
	Class, SubClass, Protocol uint8
	Endpoints                 []Endpoint
}

// ConfigInfo lists the interfaces of one configuration.
type ConfigInfo struct {
	Number     int // bConfigurationValue
	Interfaces []Setting
}

// Choice is the configuration, interface and endpoints to use for the mux.
type Choice struct {
	Config, Interface int
	In, Out           Endpoint
}

// The mux interface class triple (§1.4).
const (
	muxClass    = 0xFF
	muxSubClass = 0xFE
	muxProtocol = 0x02
)

// ChooseConfig picks the mux interface as usbmuxd HEAD does: configurations from the highest
// number down, the first interface whose altsetting 0 is class FF/FE/02 (all three must match,
// not usbmuxd's OR quirk) with exactly two bulk endpoints, one IN and one OUT (§1.4).
func ChooseConfig(cfgs []ConfigInfo) (Choice, bool) {
	best := -1
	var choice Choice
	for _, c := range cfgs {
		if c.Number <= best {
			continue
		}
		for _, s := range c.Interfaces {
			if s.Class != muxClass || s.SubClass != muxSubClass || s.Protocol != muxProtocol || len(s.Endpoints) != 2 {
				continue
			}
			a, b := s.Endpoints[0], s.Endpoints[1]
			if !a.Bulk || !b.Bulk || a.In() == b.In() {
				continue
			}
			if a.In() {
				a, b = b, a
			}
			best = c.Number
			choice = Choice{Config: c.Number, Interface: s.Interface, Out: a, In: b}
			break
		}
	}
	return choice, best >= 0
}

// NeedsZLP reports whether a write of n bytes must be followed by a zero-length packet: when it
// is an exact, non-zero multiple of the OUT endpoint's wMaxPacketSize, the device would otherwise
// glue it to the next packet (§1.5). A maxPacket of 0 or less means 64, usbmuxd's fallback.
func NeedsZLP(n, maxPacket int) bool {
	if maxPacket <= 0 {
		maxPacket = 64
	}
	return n > 0 && n%maxPacket == 0
}

// LocationID is the Linux usbmuxd location id: bus << 16 | address (§1.5).
func LocationID(bus, address int) uint32 { return uint32(bus)<<16 | uint32(address) }
