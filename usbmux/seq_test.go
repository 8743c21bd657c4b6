package usbmux

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSeqWrap(t *testing.T) {
	near := Seq(0xFFFFFF00)
	past := near.Add(0x200) // wraps to 0x100
	assert.Equal(t, Seq(0x100), past)
	assert.Equal(t, uint32(0x200), past.Sub(near))
	assert.True(t, near.LessThan(past))
	assert.False(t, past.LessThan(near))
	assert.True(t, near.LessThanEq(near))
	assert.False(t, near.LessThan(near))
	assert.Equal(t, past, near.Max(past))
	assert.Equal(t, past, past.Max(near))
}

func TestWindowUnits(t *testing.T) {
	assert.Equal(t, uint32(131072), WindowBytes(512))
	assert.Equal(t, uint16(512), WindowUnits(131072))
	assert.Equal(t, uint16(0), WindowUnits(255))
	assert.Equal(t, uint16(0xFFFF), WindowUnits(1<<30))
}

func TestSendable(t *testing.T) {
	cases := []struct {
		name      string
		next, ack Seq
		win, want uint32
	}{
		{"idle", 1, 1, 131072, 131072},
		{"half in flight", 65537, 1, 131072, 65536},
		{"window full", 131073, 1, 131072, 0},
		{"beyond window", 200000, 1, 131072, 0},
		{"zero window", 1, 1, 0, 0},
		{"ack ahead of next", 10, 20, 131072, 0},
		{"across wrap", 0x100, 0xFFFFFF00, 0x1000, 0xE00},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, Sendable(c.next, c.ack, c.win), c.name)
	}
}

func TestTCPFlagsString(t *testing.T) {
	assert.Equal(t, "SYN|ACK", (FlagSYN | FlagACK).String())
	assert.Equal(t, "none", TCPFlags(0).String())
	assert.Equal(t, "RST|0x40", (FlagRST | 0x40).String())
	assert.Equal(t, "proto(9)", Protocol(9).String())
	assert.Equal(t, "control(9)", ControlType(9).String())
}
