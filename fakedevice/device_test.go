package fakedevice

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/ibackup/ibackup/fakedevice/phone"
	"github.com/ibackup/ibackup/lockdown"
	"github.com/ibackup/ibackup/usbmux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func newPhone(t *testing.T, dir string, seed int64, faults ...string) *phone.Phone {
	t.Helper()
	p, err := phone.Create(dir, phone.CreateOptions{Seed: seed, Files: 8, Size: 20 << 10})
	require.NoError(t, err)
	if len(faults) > 0 {
		p.Config.Faults = faults
		require.NoError(t, p.Save())
	}
	return p
}

// TestConnectLockdown plugs a phone in and reads values over the real stack.
func TestConnectLockdown(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	p := newPhone(t, dir, 1)
	d, err := Open(p.Dir, Options{})
	require.NoError(t, err)
	defer d.Close()
	assert.Equal(t, p.UDID(), d.UDID())

	l, err := d.Connect(ctx)
	require.NoError(t, err)
	m, err := usbmux.NewMux(ctx, l, nil)
	require.NoError(t, err)
	defer m.Close()

	store := lockdown.NewDirStore(t.TempDir())
	c, err := lockdown.Connect(ctx, m, d.UDID(), store, nil)
	require.NoError(t, err)
	v, err := c.GetValue(ctx, "", "ProductType")
	require.NoError(t, err)
	assert.Equal(t, "iPhone14,5", v)
	v, err = c.GetValue(ctx, "com.apple.mobile.backup", "WillEncrypt")
	require.NoError(t, err)
	assert.Equal(t, false, v)
	require.NoError(t, c.Close())
	require.NoError(t, m.Close())
	require.NoError(t, d.Close())
	assert.FileExists(t, p.StatePath(), "lockdownd keeps its state in the phone directory")

	_, err = d.Connect(ctx)
	assert.ErrorIs(t, err, ErrClosed)
}

// TestStoredFaults: faults in device.plist apply (deny-trust → UserDeniedPairing).
func TestStoredFaults(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := newPhone(t, t.TempDir(), 2, "deny-trust")
	d, err := Open(p.Dir, Options{})
	require.NoError(t, err)
	defer d.Close()
	assert.True(t, d.Faults().DenyTrust)
	l, err := d.Connect(ctx)
	require.NoError(t, err)
	m, err := usbmux.NewMux(ctx, l, nil)
	require.NoError(t, err)
	defer m.Close()
	_, err = lockdown.Connect(ctx, m, d.UDID(), lockdown.NewDirStore(t.TempDir()), nil)
	assert.ErrorIs(t, err, lockdown.ErrUserDeniedPairing)
}

// TestLinkDrop: link-drop-after ends the mux with an error, never a hang.
func TestLinkDrop(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := newPhone(t, t.TempDir(), 3)
	d, err := Open(p.Dir, Options{Faults: Faults{LinkDropAfter: 2000}})
	require.NoError(t, err)
	defer d.Close()
	l, err := d.Connect(ctx)
	require.NoError(t, err)
	m, err := usbmux.NewMux(ctx, l, nil)
	require.NoError(t, err)
	defer m.Close()
	_, err = lockdown.Connect(ctx, m, d.UDID(), lockdown.NewDirStore(t.TempDir()), nil)
	require.Error(t, err)
	select {
	case <-m.Done():
	case <-ctx.Done():
		t.Fatal("mux did not end after the link dropped")
	}
}

// TestFarm attaches and detaches phones as they appear and disappear.
func TestFarm(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	newPhone(t, dir, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan string, 10)
	f := NewFarm(dir, FarmOptions{Interval: 20 * time.Millisecond})
	done := make(chan error, 1)
	go func() {
		done <- f.Run(ctx, func(a *Attached) { events <- "+" + a.UDID },
			func(a *Attached) { events <- "-" + a.UDID })
	}()
	next := func() string {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no farm event")
			return ""
		}
	}
	first := next()
	assert.Regexp(t, `^\+00008110-`, first)
	p2 := newPhone(t, dir, 2)
	assert.Equal(t, "+"+p2.UDID(), next())
	require.NoError(t, os.RemoveAll(p2.Dir))
	assert.Equal(t, "-"+p2.UDID(), next())
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
	assert.Equal(t, "-"+first[1:], next())
}

// TestStallThenUnplug: a stalled link times out on the host, and unplugging
// it still stops the device side (no hang on Close).
func TestStallThenUnplug(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := newPhone(t, t.TempDir(), 4)
	d, err := Open(p.Dir, Options{Faults: Faults{StallAfter: 1500}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := d.Connect(ctx)
	require.NoError(t, err)
	m, err := usbmux.NewMux(ctx, l, nil)
	require.NoError(t, err)
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	_, err = lockdown.Connect(short, m, d.UDID(), lockdown.NewDirStore(t.TempDir()), nil)
	require.Error(t, err)
	closed := make(chan struct{})
	go func() {
		_ = m.Close()
		_ = d.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("closing a stalled link hangs")
	}
}
