package synclock

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/devmux"
	"github.com/ibackup/ibackup/fakedevice/instproxyd"
	"github.com/ibackup/ibackup/fakedevice/memlink"
	"github.com/ibackup/ibackup/lockdown/afc"
	"github.com/ibackup/ibackup/lockdown/instproxy"
	"github.com/ibackup/ibackup/lockdown/notifyproxy"
	"github.com/ibackup/ibackup/usbmux"
)

// Device ports the test serves the three services on (lockdownd would hand
// them out through StartService).
const (
	portAFC    = 49200
	portNotify = 49201
	portInst   = 49202
)

// muxPhone serves p's services over a fakedevice/memlink USB link with the
// device-side mux, and returns the host's mux.
func muxPhone(t *testing.T, p *phone, inst *instproxyd.Server) *usbmux.Mux {
	t.Helper()
	hostLink, devLink, _ := memlink.New(memlink.Options{})
	srv := devmux.New(devLink, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	listen := func(port uint16, serve func(context.Context, net.Conn) error) {
		ln, err := srv.Listen(port)
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() { defer wg.Done(); _ = serve(ctx, conn) }()
			}
		}()
	}
	listen(portAFC, p.afc.Serve)
	listen(portNotify, p.np.Serve)
	listen(portInst, inst.Serve)
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ctx) }()

	mux, err := usbmux.NewMux(ctx, hostLink, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = mux.Close()
		cancel()
		_ = srv.Close()
		wg.Wait()
	})
	return mux
}

func dialMux(t *testing.T, mux *usbmux.Mux, port uint16) net.Conn {
	t.Helper()
	conn, err := mux.Dial(ctxT(t), port)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestOverUSBMux runs what a backup host does before a backup over the USB
// mux: two hosts (two processes behind one usbmuxd) contend for the sync
// lock, the winner reads the app list and writes an AFC file, and a cancel
// from the phone ends its "backup".
func TestOverUSBMux(t *testing.T) {
	p := newPhone(t)
	inst := instproxyd.New(instproxyd.Config{Apps: []map[string]any{
		{"CFBundleIdentifier": "com.example.a", "ApplicationType": "User",
			"ApplicationSINF": []byte("sinf"), "iTunesMetadata": []byte("meta")},
	}})
	mux := muxPhone(t, p, inst)
	ctx := ctxT(t)

	a1 := afc.NewClient(dialMux(t, mux, portAFC))
	np1 := notifyproxy.NewClient(dialMux(t, mux, portNotify), nil)
	a2 := afc.NewClient(dialMux(t, mux, portAFC))
	np2 := notifyproxy.NewClient(dialMux(t, mux, portNotify), nil)
	defer np1.Close()
	defer np2.Close()

	l1, err := AcquireWithOptions(ctx, a1, np1, Options{Attempts: 1})
	require.NoError(t, err)
	_, err = AcquireWithOptions(ctx, a2, np2, Options{Attempts: 3, Interval: time.Millisecond})
	require.ErrorIs(t, err, ErrLockTimeout)

	ic := instproxy.NewClient(dialMux(t, mux, portInst))
	apps, err := ic.BrowseAll(ctx, instproxy.BrowseOptions{ApplicationType: instproxy.AppTypeUser, ReturnAttributes: instproxy.BackupAttributes})
	require.NoError(t, err)
	require.Len(t, apps, 1)
	assert.Equal(t, "com.example.a", apps[0].BundleID())
	require.NoError(t, ic.Close())

	payload := make([]byte, 300<<10) // several mux windows
	for i := range payload {
		payload[i] = byte(i % 251)
	}
	require.NoError(t, a1.MakeDir(ctx, "/iTunesRestore"))
	require.NoError(t, a1.WriteFile(ctx, "/iTunesRestore/RestoreApplications.plist", payload))
	back, err := a1.ReadFile(ctx, "/iTunesRestore/RestoreApplications.plist", 1<<20)
	require.NoError(t, err)
	assert.Equal(t, payload, back)

	bctx, cancel := l1.Bind(ctx)
	defer cancel()
	p.waitObservers(t, 2) // both connections observe (there is no un-observe)
	p.hub.Post(notifyproxy.SyncCancelRequest)
	<-bctx.Done()
	assert.True(t, errors.Is(context.Cause(bctx), ErrCancelledOnDevice))
	require.NoError(t, l1.Release(ctx))
	assert.False(t, p.afc.Locks().Held(LockPath))

	// Host 2's connection observes too and got the cancel, unread; wait
	// for it so the next Acquire's drain discards it.
	require.Eventually(t, func() bool { return len(np2.Notifications()) == 1 }, 5*time.Second, time.Millisecond)
	l2, err := AcquireWithOptions(ctx, a2, np2, Options{Attempts: 1})
	require.NoError(t, err, "the lock is free after release")
	require.NoError(t, l2.Release(ctx))
	require.NoError(t, np1.Shutdown(ctx))
	require.NoError(t, np2.Shutdown(ctx))
	require.NoError(t, a1.Close())
	require.NoError(t, a2.Close())
}
