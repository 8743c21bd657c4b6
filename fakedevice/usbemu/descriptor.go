package usbemu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// USB constants of an iPhone in its initial mode (usb-usbmux-lockdown.md
// §1.1, §1.4, §1.5, §7.1).
const (
	// VendorApple is Apple's USB vendor id.
	VendorApple = 0x05AC
	// ProductIPhone is the product id of Lightning-era and later iPhones.
	ProductIPhone = 0x12A8
	// MuxInterface is the interface number of the usbmux interface
	// (class 255, subclass 254, protocol 2) in configurations 3 and 4.
	MuxInterface = 1
	// MuxOut and MuxIn are the bulk endpoint addresses of the mux interface
	// as real phones report them ("Found interface 1 with endpoints 04/85").
	MuxOut = 0x04
	MuxIn  = 0x85
	// MaxPacket is wMaxPacketSize of the bulk endpoints at high speed.
	MaxPacket = 512
	// NumConfigs is the number of configurations of the initial mode; the
	// mux interface is in the highest, which usbmuxd 1.1.1 selects as
	// min(n, 4) (corrections.md V1).
	NumConfigs = 4
)

// String descriptor indexes used by Descriptors.
const (
	strManufacturer = 1 + iota
	strProduct
	strSerial
	strCfgPTP
	strCfgIPod
	strCfgMux
	strCfgMuxEth
	strIfPTP
	strIfMux
	strIfEth
)

// Identity is what a phone shows on the USB bus.
type Identity struct {
	// UDID is the device's UDID: 25 characters with a hyphen after the
	// 8th (new style) or 40 hex digits (old style).
	UDID string
	// ProductID defaults to ProductIPhone.
	ProductID uint16
	// BCDDevice is the device release number (bcdDevice); default 0x1501.
	BCDDevice uint16
	// Product is the product string; default "iPhone".
	Product string
	// InitialConfig is the configuration active when the phone is plugged
	// in; the kernel picks 1 when no udev rule says otherwise. Default 1.
	InitialConfig int
	// Mode is the 4-byte answer to the vendor GET_MODE request (§1.3);
	// default 03 03 03 00 (initial mode).
	Mode [4]byte
}

// ErrIdentity is returned for an Identity that cannot be put on the bus.
var ErrIdentity = errors.New("usbemu: bad identity")

// Serial returns the iSerialNumber string for a UDID: the hyphen of a
// new-style UDID removed, since usbmuxd inserts it after the 8th character
// of a 24-character serial (§1.2); 40-character UDIDs are used unchanged.
func Serial(udid string) (string, error) {
	s := udid
	if len(s) == 25 && s[8] == '-' {
		s = s[:8] + s[9:]
	}
	if len(s) != 24 && len(s) != 40 {
		return "", fmt.Errorf("%w: UDID %q is neither 8-16 nor 40 hex digits", ErrIdentity, udid)
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return "", fmt.Errorf("%w: UDID %q has a non-hex character", ErrIdentity, udid)
		}
	}
	return s, nil
}

// UDIDFromSerial is the host's side of §1.2: a 24-character serial gets a
// hyphen after the 8th character, anything else is the UDID unchanged.
func UDIDFromSerial(serial string) string {
	if len(serial) == 24 {
		return serial[:8] + "-" + serial[8:]
	}
	return serial
}

// withDefaults returns id with zero fields replaced by their defaults.
func (id Identity) withDefaults() Identity {
	if id.ProductID == 0 {
		id.ProductID = ProductIPhone
	}
	if id.BCDDevice == 0 {
		id.BCDDevice = 0x1501
	}
	if id.Product == "" {
		id.Product = "iPhone"
	}
	if id.InitialConfig == 0 {
		id.InitialConfig = 1
	}
	if id.Mode == [4]byte{} {
		id.Mode = [4]byte{3, 3, 3, 0}
	}
	return id
}

// Descriptors returns the device descriptor followed by every configuration
// descriptor, the layout the kernel exposes in sysfs "descriptors" and on
// read() of the usbfs node. The configurations are those of an iPhone in
// its initial mode (§1.4): 1 PTP, 2 iPod USB Interface (audio + HID),
// 3 PTP + Apple Mobile Device, 4 PTP + Apple Mobile Device + Apple USB
// Ethernet.
func (id Identity) Descriptors() []byte {
	id = id.withDefaults()
	dev := []byte{18, 1, 0x00, 0x02, 0, 0, 0, 64}
	dev = binary.LittleEndian.AppendUint16(dev, VendorApple)
	dev = binary.LittleEndian.AppendUint16(dev, id.ProductID)
	dev = binary.LittleEndian.AppendUint16(dev, id.BCDDevice)
	dev = append(dev, strManufacturer, strProduct, strSerial, NumConfigs)

	ptp := join(iface(0, 0, 3, 6, 1, 1, strIfPTP),
		endpoint(0x81, 2, 512, 0), endpoint(0x02, 2, 512, 0), endpoint(0x83, 3, 64, 9))
	mux := join(iface(MuxInterface, 0, 2, 0xFF, 0xFE, 2, strIfMux),
		endpoint(MuxOut, 2, MaxPacket, 0), endpoint(MuxIn, 2, MaxPacket, 0))
	eth := join(iface(2, 0, 2, 0xFF, 0xFD, 1, strIfEth),
		endpoint(0x06, 2, 512, 0), endpoint(0x87, 2, 512, 0))
	// iPod USB Interface: audio control, audio streaming (no bandwidth in
	// alternate setting 0), HID with its class descriptor and an interrupt IN.
	hid := []byte{9, 0x21, 0x11, 0x01, 0, 1, 0x22, 0x23, 0}
	ipod := join(iface(0, 0, 0, 1, 1, 0, 0), iface(1, 0, 0, 1, 2, 0, 0),
		iface(2, 0, 1, 3, 0, 0, 0), hid, endpoint(0x83, 3, 64, 4))

	return join(dev,
		config(1, 1, strCfgPTP, ptp),
		config(2, 3, strCfgIPod, ipod),
		config(3, 2, strCfgMux, join(ptp, mux)),
		config(4, 3, strCfgMuxEth, join(ptp, mux, eth)))
}

// Strings returns the string descriptors' texts by index. Index 0 (the
// LANGID list, English 0x0409) is built by the handler.
func (id Identity) Strings() (map[int]string, error) {
	id = id.withDefaults()
	serial, err := Serial(id.UDID)
	if err != nil {
		return nil, err
	}
	return map[int]string{
		strManufacturer: "Apple Inc.",
		strProduct:      id.Product,
		strSerial:       serial,
		strCfgPTP:       "PTP",
		strCfgIPod:      "iPod USB Interface",
		strCfgMux:       "PTP + Apple Mobile Device",
		strCfgMuxEth:    "PTP + Apple Mobile Device + Apple USB Ethernet",
		strIfPTP:        "PTP",
		strIfMux:        "Apple USB Multiplexor",
		strIfEth:        "Apple USB Ethernet",
	}, nil
}

func join(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func iface(num, alt, neps, class, sub, proto, str byte) []byte {
	return []byte{9, 4, num, alt, neps, class, sub, proto, str}
}

func endpoint(addr, attr byte, maxPacket uint16, interval byte) []byte {
	b := []byte{7, 5, addr, attr}
	b = binary.LittleEndian.AppendUint16(b, maxPacket)
	return append(b, interval)
}

// config builds a configuration descriptor: self-powered (0xC0), 500 mA.
func config(value, nifaces, str byte, body []byte) []byte {
	b := []byte{9, 2, 0, 0, nifaces, value, str, 0xC0, 250}
	binary.LittleEndian.PutUint16(b[2:], uint16(9+len(body)))
	return append(b, body...)
}
