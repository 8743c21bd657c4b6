package usbmuxd

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func nopDial(context.Context, uint16) (net.Conn, error) { return nil, ErrConnRefused }

func TestDeviceSetIDs(t *testing.T) {
	s := NewDeviceSet()
	a, err := s.Add(Device{UDID: "a", ID: 99}, nopDial)
	require.NoError(t, err)
	b, err := s.Add(Device{UDID: "b"}, nopDial)
	require.NoError(t, err)
	assert.Equal(t, uint32(1), a.ID, "IDs are assigned by the set")
	assert.Equal(t, uint32(2), b.ID)

	_, err = s.Add(Device{UDID: "a"}, nopDial)
	assert.ErrorIs(t, err, ErrDuplicate)
	_, err = s.Add(Device{}, nopDial)
	assert.Error(t, err)

	require.True(t, s.Remove("a"))
	assert.False(t, s.Remove("a"))
	a2, err := s.Add(Device{UDID: "a"}, nopDial)
	require.NoError(t, err)
	assert.Equal(t, uint32(3), a2.ID, "a replugged device gets a new ID (§3.5)")
	assert.Equal(t, []Device{b, a2}, s.Devices())

	// Wrap-around skips 0 and IDs in use.
	s.nextID = ^uint32(0)
	c, err := s.Add(Device{UDID: "c"}, nopDial)
	require.NoError(t, err)
	assert.Equal(t, ^uint32(0), c.ID)
	d, err := s.Add(Device{UDID: "d"}, nopDial)
	require.NoError(t, err)
	assert.Equal(t, uint32(1), d.ID, "0 is skipped")
	e, err := s.Add(Device{UDID: "e"}, nopDial)
	require.NoError(t, err)
	assert.Equal(t, uint32(4), e.ID, "2 and 3 are in use")

	_, err = s.Dial(context.Background(), 1234, 1)
	assert.ErrorIs(t, err, ErrNoDevice)
}

func TestDeviceSetWatch(t *testing.T) {
	s := NewDeviceSet()
	a, _ := s.Add(Device{UDID: "a"}, nopDial)
	ctx, cancel := context.WithCancel(context.Background())
	snap, ch := s.Watch(ctx)
	assert.Equal(t, []Device{a}, snap)
	// Add and Remove never block on a watcher that is not reading.
	var added []Device
	for _, u := range []string{"b", "c", "d"} {
		d, err := s.Add(Device{UDID: u}, nopDial)
		require.NoError(t, err)
		added = append(added, d)
	}
	s.Remove("a")
	want := []Event{{Attached, added[0]}, {Attached, added[1]}, {Attached, added[2]}, {Detached, a}}
	for _, w := range want {
		select {
		case ev := <-ch:
			assert.Equal(t, w, ev)
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
	}
	cancel()
	for range ch {
	}
	s.mu.Lock()
	assert.Empty(t, s.watchers, "watcher removed after ctx ends")
	s.mu.Unlock()
}
