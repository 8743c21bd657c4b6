//go:build libusb

package usb

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIsMuxProduct(t *testing.T) {
	for pid, want := range map[uint16]bool{0x1290: true, 0x12A8: true, 0x12AF: true, 0x12B0: false,
		0x128F: false, 0x8600: true, 0x1901: true, 0x1905: true, 0x1906: false, 0x1281: false} {
		assert.Equal(t, want, IsMuxProduct(pid), "pid %#04x", pid)
	}
}

func TestUDIDFromSerial(t *testing.T) {
	assert.Equal(t, "00008110-001A2B3C4D5E6F7A", UDIDFromSerial("00008110001A2B3C4D5E6F7A"))
	sha := "0123456789abcdef0123456789abcdef01234567"
	assert.Equal(t, sha, UDIDFromSerial(sha))
	assert.Equal(t, "", UDIDFromSerial(""))
}

func muxSetting(n int) Setting {
	return Setting{Interface: n, Class: 0xFF, SubClass: 0xFE, Protocol: 0x02,
		Endpoints: []Endpoint{{Address: 0x85, Bulk: true, MaxPacket: 512}, {Address: 0x04, Bulk: true, MaxPacket: 512}}}
}

func TestChooseConfigHighestFirst(t *testing.T) {
	ptp := Setting{Interface: 0, Class: 6, SubClass: 1, Protocol: 1,
		Endpoints: []Endpoint{{Address: 0x81, Bulk: true}, {Address: 0x02, Bulk: true}, {Address: 0x83}}}
	tether := Setting{Interface: 2, Class: 0xFF, SubClass: 0xFD, Protocol: 1,
		Endpoints: []Endpoint{{Address: 0x86, Bulk: true}, {Address: 0x07, Bulk: true}}}
	cfgs := []ConfigInfo{ // the iPhone layout of §1.4, out of order
		{Number: 3, Interfaces: []Setting{ptp, muxSetting(1)}},
		{Number: 1, Interfaces: []Setting{ptp}},
		{Number: 4, Interfaces: []Setting{ptp, muxSetting(1), tether}},
		{Number: 2, Interfaces: []Setting{{Interface: 0, Class: 1, SubClass: 1}}},
	}
	c, ok := ChooseConfig(cfgs)
	require.True(t, ok)
	assert.Equal(t, 4, c.Config)
	assert.Equal(t, 1, c.Interface)
	assert.Equal(t, uint8(0x04), c.Out.Address)
	assert.Equal(t, uint8(0x85), c.In.Address)
}

func TestChooseConfigStrictAnd(t *testing.T) {
	partial := muxSetting(1)
	partial.Protocol = 0x01 // usbmuxd's OR test would accept this
	_, ok := ChooseConfig([]ConfigInfo{{Number: 1, Interfaces: []Setting{partial}}})
	assert.False(t, ok)

	twoIn := muxSetting(1)
	twoIn.Endpoints[1].Address = 0x84
	_, ok = ChooseConfig([]ConfigInfo{{Number: 1, Interfaces: []Setting{twoIn}}})
	assert.False(t, ok)

	three := muxSetting(1)
	three.Endpoints = append(three.Endpoints, Endpoint{Address: 0x86, Bulk: true})
	_, ok = ChooseConfig([]ConfigInfo{{Number: 1, Interfaces: []Setting{three}}})
	assert.False(t, ok)

	_, ok = ChooseConfig(nil)
	assert.False(t, ok)
}

func TestNeedsZLP(t *testing.T) {
	assert.True(t, NeedsZLP(512, 512))
	assert.True(t, NeedsZLP(49152, 512))
	assert.False(t, NeedsZLP(513, 512))
	assert.False(t, NeedsZLP(0, 512))
	assert.True(t, NeedsZLP(1024, 1024))
	assert.True(t, NeedsZLP(128, 0)) // fallback 64
}

func TestLocationID(t *testing.T) {
	assert.Equal(t, uint32(0x00010002), LocationID(1, 2))
}
