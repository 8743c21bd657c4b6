package instproxy

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ibackup/ibackup/fakedevice/fakenet"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tcpPair returns both ends of a buffered loopback connection.
func tcpPair(t *testing.T) (client, server net.Conn) { return fakenet.Pipe(t) }

func u(v uint64) *uint64 { return &v }

// serveScript reads one request, hands it to check, then writes replies.
func serveScript(t *testing.T, conn net.Conn, check func(b []byte), replies ...any) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pc := plistconn.New(conn, plistconn.Binary)
		b, err := pc.ReadRaw()
		if err != nil {
			return
		}
		check(b)
		for _, r := range replies {
			if pc.WriteMessage(r) != nil {
				return
			}
		}
	}()
	return done
}

func TestBrowseExactRequestAndStream(t *testing.T) {
	cc, sc := tcpPair(t)
	var got map[string]any
	var raw []byte
	done := serveScript(t, sc, func(b []byte) { raw = b; _ = plistconn.Unmarshal(b, &got) },
		Response{Status: StatusBrowsing, CurrentList: []map[string]any{
			{"CFBundleIdentifier": "com.a", "ApplicationSINF": []byte{1}},
			{"CFBundleIdentifier": "com.ignored"},
		}, CurrentAmount: u(1), CurrentIndex: u(0), Total: u(2)},
		Response{Status: StatusBrowsing, CurrentList: []map[string]any{{"CFBundleIdentifier": "com.b"}}},
		Response{Status: StatusComplete},
	)
	c := NewClient(cc)
	defer c.Close()
	apps, err := c.BrowseAll(context.Background(), BrowseOptions{ApplicationType: AppTypeUser, ReturnAttributes: BackupAttributes})
	require.NoError(t, err)
	<-done
	// §4.4: {Command:"Browse", ClientOptions:{ApplicationType:"User", ReturnAttributes:[…]}} as XML.
	assert.Contains(t, string(raw), "<?xml")
	assert.Equal(t, map[string]any{
		"Command": "Browse",
		"ClientOptions": map[string]any{
			"ApplicationType":  "User",
			"ReturnAttributes": []any{"CFBundleIdentifier", "ApplicationSINF", "iTunesMetadata"},
		},
	}, got)
	require.Len(t, apps, 2, "CurrentAmount overrides the list length")
	assert.Equal(t, "com.a", apps[0].BundleID())
	sinf, ok := apps[0].Data(AttrApplicationSINF)
	assert.True(t, ok)
	assert.Equal(t, []byte{1}, sinf)
	assert.Equal(t, "com.b", apps[1].BundleID())
}

func TestBrowseDeviceError(t *testing.T) {
	cc, sc := tcpPair(t)
	serveScript(t, sc, func([]byte) {},
		Response{Status: StatusBrowsing, CurrentList: []map[string]any{{"CFBundleIdentifier": "com.a"}}},
		Response{Error: "APIInternalError", ErrorDescription: "boom"})
	c := NewClient(cc)
	defer c.Close()
	_, err := c.BrowseAll(context.Background(), BrowseOptions{})
	var de *Error
	require.ErrorAs(t, err, &de)
	assert.Equal(t, "APIInternalError", de.Code)
	assert.Equal(t, "instproxy: device error APIInternalError: boom", de.Error())
}

func TestBrowseMissingStatusAndCallbackError(t *testing.T) {
	cc, sc := tcpPair(t)
	serveScript(t, sc, func([]byte) {}, map[string]any{"Foo": "bar"})
	c := NewClient(cc)
	defer c.Close()
	err := c.Browse(context.Background(), BrowseOptions{}, func(App) error { return nil })
	assert.ErrorIs(t, err, ErrMalformed)
	assert.ErrorIs(t, c.Browse(context.Background(), BrowseOptions{}, nil), ErrMalformed, "client stays unusable")

	cc2, sc2 := tcpPair(t)
	serveScript(t, sc2, func([]byte) {}, Response{Status: StatusBrowsing, CurrentList: []map[string]any{{"a": "b"}}})
	c2 := NewClient(cc2)
	defer c2.Close()
	stopErr := errors.New("enough")
	assert.ErrorIs(t, c2.Browse(context.Background(), BrowseOptions{}, func(App) error { return stopErr }), stopErr)
}

func TestBrowseTimeout(t *testing.T) {
	cc, sc := tcpPair(t)
	serveScript(t, sc, func([]byte) {}) // never answers
	c := NewClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := c.BrowseAll(ctx, BrowseOptions{})
	assert.Error(t, err)
	require.NoError(t, c.Close())
	_, err = c.BrowseAll(context.Background(), BrowseOptions{})
	assert.ErrorIs(t, err, ErrClosed)
}

// FuzzDecodeResponse: decoding never panics and Apps never indexes out of
// range.
func FuzzDecodeResponse(f *testing.F) {
	for _, r := range []Response{
		{Status: StatusBrowsing, CurrentList: []map[string]any{{"CFBundleIdentifier": "x"}}, CurrentAmount: u(5)},
		{Status: StatusComplete},
		{Error: "E"},
	} {
		b, err := plistconn.Marshal(r, plistconn.XML)
		if err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeResponse(b)
		if err != nil {
			return
		}
		apps := r.Apps()
		if len(apps) > len(r.CurrentList) {
			t.Fatalf("%d apps from a %d-entry list", len(apps), len(r.CurrentList))
		}
		for _, a := range apps {
			_ = a.BundleID()
		}
	})
}

func TestCloseInterruptsBrowse(t *testing.T) {
	cc, sc := tcpPair(t)
	got := make(chan struct{})
	serveScript(t, sc, func([]byte) { close(got) })
	c := NewClient(cc)
	res := make(chan error, 1)
	go func() { _, err := c.BrowseAll(context.Background(), BrowseOptions{}); res <- err }()
	<-got
	require.NoError(t, c.Close())
	assert.ErrorIs(t, <-res, ErrClosed)
}
