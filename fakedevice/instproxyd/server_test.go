package instproxyd

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ibackup/ibackup/lockdown/instproxy"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func dial(t *testing.T, srv *Server) (*instproxy.Client, <-chan error) {
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
	c := instproxy.NewClient(conn)
	t.Cleanup(func() { _ = c.Close(); cancel(); wg.Wait() })
	return c, res
}

func testApps(n int) []map[string]any {
	var apps []map[string]any
	for i := range n {
		apps = append(apps, map[string]any{
			"CFBundleIdentifier": "com.example.app" + string(rune('a'+i)),
			"ApplicationType":    "User",
			"ApplicationSINF":    []byte{byte(i)},
			"iTunesMetadata":     []byte("<plist/>"),
			"CFBundleVersion":    "1.0",
		})
	}
	return append(apps, map[string]any{"CFBundleIdentifier": "com.apple.mobilesafari", "ApplicationType": "System"})
}

func TestBrowseRoundTrip(t *testing.T) {
	srv := New(Config{Apps: testApps(7), BatchSize: 3})
	c, res := dial(t, srv)
	ctx := context.Background()

	apps, err := c.BrowseAll(ctx, instproxy.BrowseOptions{
		ApplicationType: instproxy.AppTypeUser, ReturnAttributes: instproxy.BackupAttributes})
	require.NoError(t, err)
	require.Len(t, apps, 7, "three batches of at most 3, system app filtered out")
	for i, a := range apps {
		assert.Equal(t, "com.example.app"+string(rune('a'+i)), a.BundleID())
		assert.Len(t, a, 3, "only the requested attributes")
		_, ok := a.Data("ApplicationSINF")
		assert.True(t, ok)
	}

	// Same connection, next command: everything.
	apps, err = c.BrowseAll(ctx, instproxy.BrowseOptions{})
	require.NoError(t, err)
	assert.Len(t, apps, 8)
	apps, err = c.BrowseAll(ctx, instproxy.BrowseOptions{ApplicationType: instproxy.AppTypeSystem})
	require.NoError(t, err)
	require.Len(t, apps, 1)
	assert.Equal(t, "System", apps[0]["ApplicationType"])

	require.NoError(t, c.Close())
	assert.NoError(t, <-res)
}

func TestBrowseNoApps(t *testing.T) {
	c, _ := dial(t, New(Config{}))
	apps, err := c.BrowseAll(context.Background(), instproxy.BrowseOptions{ApplicationType: "User"})
	require.NoError(t, err)
	assert.Empty(t, apps)
}

func TestServeEndsWithContext(t *testing.T) {
	cc, sc := net.Pipe()
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(Config{}).Serve(ctx, sc) }()
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
}

func TestUnknownCommandGetsError(t *testing.T) {
	cc, sc := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- New(Config{}).Serve(context.Background(), sc) }()
	pc := plistconn.New(cc, plistconn.XML)
	require.NoError(t, pc.WriteMessage(instproxy.Request{Command: "Install"}))
	var r instproxy.Response
	require.NoError(t, pc.ReadMessage(&r))
	assert.Equal(t, "UnknownCommand", r.Error)
	require.NoError(t, cc.Close())
	assert.NoError(t, <-done)
}
