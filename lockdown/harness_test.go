package lockdown_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ibackup/ibackup/fakedevice/devmux"
	"github.com/ibackup/ibackup/fakedevice/lockdownd"
	"github.com/ibackup/ibackup/fakedevice/memlink"
	"github.com/ibackup/ibackup/lockdown"
	"github.com/ibackup/ibackup/usbmux"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testUDID = "00008110-001E2D3C4B5A6978"

// keys are generated once per test binary: RSA-2048 generation under -race
// is slow, and reusing keys does not change what the tests check.
var (
	keysOnce sync.Once
	keys     [3]*rsa.PrivateKey
	keysErr  error
)

func testKeys(t *testing.T) [3]*rsa.PrivateKey {
	t.Helper()
	keysOnce.Do(func() {
		for i := range keys {
			if keys[i], keysErr = lockdown.GenerateKey(); keysErr != nil {
				return
			}
		}
	})
	require.NoError(t, keysErr)
	return keys
}

// keyGen hands out the shared root and host keys alternately.
func keyGen(t *testing.T) lockdown.KeyGenerator {
	k := testKeys(t)
	var mu sync.Mutex
	n := 0
	return func() (*rsa.PrivateKey, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		return k[1+n%2], nil
	}
}

// fakeClock is shared by client (Now/Sleep) and device (Now): Sleep
// advances time instead of waiting.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps int
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.sleeps++
	return ctx.Err()
}

// loopNet maps device ports to loopback TCP listeners: it is the
// PortListener of the fake and the Dialer of the client.
type loopNet struct {
	mu    sync.Mutex
	addrs map[uint16]string
}

func (n *loopNet) Listen(port uint16) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.addrs == nil {
		n.addrs = map[uint16]string{}
	}
	n.addrs[port] = ln.Addr().String()
	return ln, nil
}

func (n *loopNet) Dial(ctx context.Context, port uint16) (net.Conn, error) {
	n.mu.Lock()
	a, ok := n.addrs[port]
	n.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("port %d: connection refused", port)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", a)
}

// device is a running fake lockdownd reachable through net.
type device struct {
	srv   *lockdownd.Server
	dial  lockdown.Dialer
	clock *fakeClock
	dir   string // pair record directory
	store *lockdown.DirStore
	logs  *bytes.Buffer
	logMu *sync.Mutex
}

// echoService answers every byte it reads.
func echoService(name string, ssl, escrow bool) lockdownd.Service {
	return lockdownd.Service{Name: name, SSL: ssl, EscrowBag: escrow, Serve: func(ctx context.Context, c net.Conn) error {
		buf := make([]byte, 1024)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return nil
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return err
			}
		}
	}}
}

type lockedBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// startDevice runs a fake lockdownd configured by mod behind the USB mux
// over an in-memory link: usbmux.Mux on the host end, devmux on the device
// end.
func startDevice(t *testing.T, mod func(*lockdownd.Config)) *device {
	t.Helper()
	host, dev, _ := memlink.New(memlink.Options{})
	dm := devmux.New(dev, nil)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = dm.Serve(ctx)
	}()
	mux, err := usbmux.NewMux(ctx, host, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		mux.Close()
		cancel()
		<-served
	})
	return startDeviceOn(t, mux, dm, mod)
}

// startDeviceTCP runs a fake lockdownd with loopback TCP standing in for
// the mux.
func startDeviceTCP(t *testing.T, mod func(*lockdownd.Config)) *device {
	t.Helper()
	n := &loopNet{}
	return startDeviceOn(t, n, n, mod)
}

func startDeviceOn(t *testing.T, dial lockdown.Dialer, listen lockdownd.PortListener, mod func(*lockdownd.Config)) *device {
	t.Helper()
	d := &device{dial: dial, clock: newClock(), dir: t.TempDir(), logs: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	d.store = lockdown.NewDirStore(filepath.Join(d.dir, "lockdown"))
	cfg := lockdownd.Config{
		Values:    lockdownd.ExampleValues(testUDID),
		Domains:   lockdownd.ExampleDomains(),
		StatePath: filepath.Join(d.dir, "lockdownd.plist"),
		DeviceKey: testKeys(t)[0],
		Services: []lockdownd.Service{
			echoService("com.apple.mobilebackup2", true, true),
			echoService("com.apple.afc", false, false),
		},
		Listener: listen,
		Now:      d.clock.Now,
		Logger:   slog.New(slog.NewTextHandler(lockedBuffer{d.logMu, d.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := lockdownd.New(cfg)
	require.NoError(t, err)
	d.srv = srv
	ln, err := listen.Listen(lockdown.Port)
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = srv.ServeConn(context.Background(), c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		srv.Close()
		wg.Wait()
	})
	return d
}

// opts are client options wired to the device's clock and the shared keys.
func (d *device) opts(t *testing.T) *lockdown.Options {
	return &lockdown.Options{
		Now: d.clock.Now, Sleep: d.clock.Sleep, GenerateKey: keyGen(t),
		Logger: slog.New(slog.NewTextHandler(lockedBuffer{d.logMu, d.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// client dials lockdownd and returns a plain client (no session).
func (d *device) client(t *testing.T) *lockdown.Client {
	t.Helper()
	conn, err := d.dial.Dial(context.Background(), lockdown.Port)
	require.NoError(t, err)
	c := lockdown.NewClient(conn, d.opts(t))
	t.Cleanup(func() { c.Close() })
	return c
}

var fixedNow = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
