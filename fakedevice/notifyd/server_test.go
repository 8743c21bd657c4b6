package notifyd

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ibackup/ibackup/lockdown/notifyproxy"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// dial serves one loopback TCP connection with srv; the returned channel
// yields Serve's result.
func dial(t *testing.T, srv *Server) (net.Conn, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	sconn, err := ln.Accept() // before the deferred ln.Close, which would reset it
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		res <- srv.Serve(ctx, sconn)
	}()
	t.Cleanup(func() { _ = conn.Close(); cancel(); wg.Wait() })
	return conn, res
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRelayBetweenHostsAndPhone(t *testing.T) {
	srv := New(Config{})
	hub := srv.Hub()
	ctx := ctxT(t)
	ca, resA := dial(t, srv)
	cb, resB := dial(t, srv)
	a := notifyproxy.NewClient(ca, nil)
	b := notifyproxy.NewClient(cb, nil)

	require.NoError(t, a.Observe(ctx, notifyproxy.SyncCancelRequest, notifyproxy.SyncLockRequest))
	require.NoError(t, hub.WaitObserved(ctx, notifyproxy.SyncLockRequest))
	assert.Equal(t, 0, hub.Post("com.example.unobserved"))

	// The phone posts: the user tapped Cancel.
	assert.Equal(t, 1, hub.CancelSync())
	assert.Equal(t, notifyproxy.SyncCancelRequest, <-a.Notifications())

	// Host B posts a lock request: it reaches host A's observation.
	require.NoError(t, b.Post(ctx, notifyproxy.SyncLockRequest))
	assert.Equal(t, notifyproxy.SyncLockRequest, <-a.Notifications())
	require.NoError(t, hub.WaitHostPost(ctx, notifyproxy.SyncLockRequest))
	assert.Equal(t, []string{notifyproxy.SyncLockRequest}, hub.HostPosts())

	require.NoError(t, a.Shutdown(ctx))
	assert.ErrorIs(t, a.Err(), notifyproxy.ErrProxyDeath, "Shutdown is answered with ProxyDeath")
	assert.NoError(t, <-resA)
	require.NoError(t, b.Close())
	assert.NoError(t, <-resB)
	assert.Equal(t, 0, hub.Observers(notifyproxy.SyncCancelRequest), "closed connections unregister")
}

func TestMalformedHostMessageEndsConnection(t *testing.T) {
	srv := New(Config{})
	conn, res := dial(t, srv)
	pc := plistconn.New(conn, plistconn.XML)
	require.NoError(t, pc.WriteMessage(map[string]any{"Name": "x"}))
	assert.ErrorIs(t, <-res, notifyproxy.ErrMalformed)
}

func TestServeEndsWithContext(t *testing.T) {
	srv := New(Config{})
	cc, sc := net.Pipe()
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, sc) }()
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
}

func TestWaitEndsWithContext(t *testing.T) {
	hub := NewHub()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, hub.WaitHostPost(ctx, "x"), context.Canceled)
}
