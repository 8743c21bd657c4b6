package usbemu

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSerial(t *testing.T) {
	s, err := Serial("00008030-001A2B3C4D5E6F70")
	require.NoError(t, err)
	assert.Equal(t, "00008030001A2B3C4D5E6F70", s)
	assert.Equal(t, "00008030-001A2B3C4D5E6F70", UDIDFromSerial(s))
	old := "0123456789abcdef0123456789abcdef01234567"
	s, err = Serial(old)
	require.NoError(t, err)
	assert.Equal(t, old, s)
	assert.Equal(t, old, UDIDFromSerial(s))
	for _, bad := range []string{"", "00008030-001A2B3C4D5E6F7", "0123456789abcdef0123456789abcdef0123456z"} {
		_, err := Serial(bad)
		assert.ErrorIs(t, err, ErrIdentity, bad)
	}
}

// muxIface is what a host finds when it looks for the mux interface.
type muxIface struct {
	config, iface, out, in int
	maxPacket              [2]int
}

// findMux walks the descriptors like a host (§1.4): every configuration,
// every interface of altsetting 0 with class 255/254/2 and exactly one bulk
// OUT and one bulk IN endpoint.
func findMux(t *testing.T, d []byte) (configs []int, found []muxIface) {
	t.Helper()
	require.GreaterOrEqual(t, len(d), 18)
	require.Equal(t, byte(18), d[0])
	n := int(d[17])
	rest := d[18:]
	for i := 0; i < n; i++ {
		require.GreaterOrEqual(t, len(rest), 9)
		require.Equal(t, byte(2), rest[1], "config descriptor type")
		total := int(binary.LittleEndian.Uint16(rest[2:]))
		require.LessOrEqual(t, total, len(rest))
		cfg, value := rest[9:total], int(rest[5])
		configs = append(configs, value)
		var cur *muxIface
		for len(cfg) > 0 {
			l, typ := int(cfg[0]), cfg[1]
			require.GreaterOrEqual(t, l, 2)
			switch typ {
			case 4:
				cur = nil
				if cfg[3] == 0 && cfg[5] == 0xFF && cfg[6] == 0xFE && cfg[7] == 2 && cfg[4] == 2 {
					found = append(found, muxIface{config: value, iface: int(cfg[2])})
					cur = &found[len(found)-1]
				}
			case 5:
				if cur != nil {
					require.Equal(t, byte(2), cfg[3]&3, "bulk")
					mp := int(binary.LittleEndian.Uint16(cfg[4:]))
					if cfg[2]&0x80 != 0 {
						cur.in, cur.maxPacket[1] = int(cfg[2]), mp
					} else {
						cur.out, cur.maxPacket[0] = int(cfg[2]), mp
					}
				}
			}
			cfg = cfg[l:]
		}
		rest = rest[total:]
	}
	assert.Empty(t, rest)
	return configs, found
}

func TestDescriptors(t *testing.T) {
	d := Identity{UDID: "00008030-001A2B3C4D5E6F70"}.Descriptors()
	assert.Equal(t, uint16(VendorApple), binary.LittleEndian.Uint16(d[8:]))
	assert.Equal(t, uint16(ProductIPhone), binary.LittleEndian.Uint16(d[10:]))
	assert.Equal(t, []byte{1, 2, 3}, d[14:17], "iManufacturer, iProduct, iSerialNumber")
	configs, mux := findMux(t, d)
	assert.Equal(t, []int{1, 2, 3, 4}, configs)
	want := []muxIface{
		{config: 3, iface: MuxInterface, out: MuxOut, in: MuxIn, maxPacket: [2]int{512, 512}},
		{config: 4, iface: MuxInterface, out: MuxOut, in: MuxIn, maxPacket: [2]int{512, 512}},
	}
	assert.Equal(t, want, mux)
}

func TestStrings(t *testing.T) {
	s, err := Identity{UDID: "00008030-001A2B3C4D5E6F70", Product: "iPad"}.Strings()
	require.NoError(t, err)
	d := Identity{}.Descriptors()
	assert.Equal(t, "Apple Inc.", s[int(d[14])])
	assert.Equal(t, "iPad", s[int(d[15])])
	assert.Equal(t, "00008030001A2B3C4D5E6F70", s[int(d[16])])
	// Every string index a descriptor names has a string.
	rest := d[18:]
	for len(rest) > 0 {
		l, typ := int(rest[0]), rest[1]
		if typ == 2 && rest[6] != 0 {
			assert.Contains(t, s, int(rest[6]))
		}
		if typ == 4 && rest[8] != 0 {
			assert.Contains(t, s, int(rest[8]))
		}
		rest = rest[l:]
	}
}

func FuzzSerial(f *testing.F) {
	f.Add("00008030-001A2B3C4D5E6F70")
	f.Add("0123456789abcdef0123456789abcdef01234567")
	f.Add("00008030001A2B3C4D5E6F70")
	f.Fuzz(func(t *testing.T, udid string) {
		s, err := Serial(udid)
		if err != nil {
			return
		}
		assert.Contains(t, []int{24, 40}, len(s))
		back := UDIDFromSerial(s)
		again, err := Serial(back)
		require.NoError(t, err)
		assert.Equal(t, s, again)
	})
}
