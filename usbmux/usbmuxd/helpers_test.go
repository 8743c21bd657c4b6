package usbmuxd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ibackup/ibackup/lockdown/pairrecord"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// lockdownPort is the port our test devices serve (an echo service).
const lockdownPort = 62078

// echoDevice is a tiny test device: Dial to lockdownPort returns one end of
// a loopback TCP connection whose other end echoes; other ports are
// refused.
type echoDevice struct {
	l     net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
	dials int
}

func newEchoDevice(t testing.TB) *echoDevice {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	d := &echoDevice{l: l}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			d.mu.Lock()
			d.conns = append(d.conns, c)
			d.mu.Unlock()
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		d.mu.Lock()
		for _, c := range d.conns {
			c.Close()
		}
		d.mu.Unlock()
		d.wg.Wait()
	})
	return d
}

func (d *echoDevice) Dial(ctx context.Context, port uint16) (net.Conn, error) {
	d.mu.Lock()
	d.dials++
	d.mu.Unlock()
	if port != lockdownPort {
		return nil, fmt.Errorf("test device: port %d: %w", port, syscall.ECONNREFUSED)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", d.l.Addr().String())
}

// testUDID returns a UDID in the 24-character-plus-hyphen form.
func testUDID(i int) string {
	return fmt.Sprintf("00008110-%016X", 0x1A2B3C4D0000+i)
}

// shortTempDir returns a directory whose paths fit in a sockaddr_un.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mux")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

type testServer struct {
	srv     *Server
	set     *DeviceSet
	addr    string // "UNIX:/path"
	path    string
	records pairrecord.Dir
}

// startServer serves set on a fresh UNIX socket until the test ends.
func startServer(t testing.TB, set *DeviceSet, opts *Options) *testServer {
	t.Helper()
	dir := shortTempDir(t)
	if opts == nil {
		opts = &Options{}
	}
	if opts.Records.Path == "" {
		opts.Records.Path = filepath.Join(dir, "lockdown")
	}
	ts := &testServer{set: set, path: filepath.Join(dir, "sock"), records: opts.Records}
	ts.addr = "UNIX:" + ts.path
	l, err := Listen(ts.addr)
	require.NoError(t, err)
	ts.srv = NewServer(set, opts)
	done := make(chan error, 1)
	go func() { done <- ts.srv.Serve(context.Background(), l) }()
	t.Cleanup(func() {
		require.NoError(t, ts.srv.Close())
		err := <-done
		require.True(t, errors.Is(err, ErrServerClosed), "Serve returned %v", err)
	})
	return ts
}

func (ts *testServer) client(t *testing.T, opts *ClientOptions) *Client {
	t.Helper()
	c, err := NewClient(ts.addr, opts)
	require.NoError(t, err)
	return c
}

// rawConn opens a plain socket to the server for byte-level tests.
func (ts *testServer) rawConn(t *testing.T) (net.Conn, *Framer) {
	t.Helper()
	c, err := net.Dial("unix", ts.path)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	fr := NewFramer(c, c)
	fr.MaxSize = DefaultMaxReplySize
	return c, fr
}

// addEcho attaches n echo devices and returns them in ID order.
func addEcho(t *testing.T, set *DeviceSet, n int) []Device {
	t.Helper()
	out := make([]Device, 0, n)
	for i := range n {
		d, err := set.Add(Device{UDID: testUDID(i), ProductID: 0x12A8, LocationID: uint32(0x10000 + i)}, newEchoDevice(t).Dial)
		require.NoError(t, err)
		out = append(out, d)
	}
	return out
}
