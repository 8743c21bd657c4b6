package afcd

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ibackup/ibackup/lockdown/afc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	timeout = 5 * time.Second
	tick    = 5 * time.Millisecond
)

// dial serves one loopback TCP connection with srv and returns a client on
// it. Cleanup closes the client and waits for Serve to return.
func dial(t *testing.T, srv *Server) *afc.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	sconn, err := ln.Accept() // before the deferred ln.Close, which would reset it
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = srv.Serve(ctx, sconn)
	}()
	c := afc.NewClient(conn)
	t.Cleanup(func() { _ = c.Close(); cancel(); wg.Wait() })
	return c
}

func newServer(t *testing.T, locks *LockTable, root string) *Server {
	t.Helper()
	srv, err := New(Config{Root: root, Locks: locks, TotalBytes: 64 << 30, FreeBytes: 32 << 30})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func TestLayoutCreated(t *testing.T) {
	root := t.TempDir()
	newServer(t, nil, root)
	assert.DirExists(t, filepath.Join(root, "iTunes_Control", "iTunes"))
	assert.FileExists(t, filepath.Join(root, "com.apple.itunes.lock_sync"))
}

func TestFileSystemRoundTrip(t *testing.T) {
	root := t.TempDir()
	c := dial(t, newServer(t, nil, root))
	ctx := context.Background()

	// Restore preparation as idevicebackup2 does it (§4.2 step 10).
	require.NoError(t, c.MakeDir(ctx, "/iTunesRestore"))
	require.NoError(t, c.MakeDir(ctx, "/iTunesRestore"), "existing directory is success")
	big := make([]byte, 200<<10+17)
	for i := range big {
		big[i] = byte(i * 7)
	}
	require.NoError(t, c.WriteFile(ctx, "/iTunesRestore/RestoreApplications.plist", big))
	onDisk, err := os.ReadFile(filepath.Join(root, "iTunesRestore", "RestoreApplications.plist"))
	require.NoError(t, err)
	assert.Equal(t, big, onDisk)
	got, err := c.ReadFile(ctx, "/iTunesRestore/RestoreApplications.plist", 1<<20)
	require.NoError(t, err)
	assert.Equal(t, big, got)

	fi, err := c.Stat(ctx, "/iTunesRestore/RestoreApplications.plist")
	require.NoError(t, err)
	assert.Equal(t, int64(len(big)), fi.Size)
	assert.Equal(t, afc.TypeRegular, fi.Type)
	fi, err = c.Stat(ctx, "/iTunes_Control")
	require.NoError(t, err)
	assert.True(t, fi.IsDir())
	_, err = c.Stat(ctx, "/Books/iBooksData2.plist")
	assert.ErrorIs(t, err, afc.StatusObjectNotFound)

	names, err := c.ReadDir(ctx, "/")
	require.NoError(t, err)
	assert.Equal(t, []string{"com.apple.itunes.lock_sync", "iTunesRestore", "iTunes_Control"}, names)
	_, err = c.ReadDir(ctx, "/nope")
	assert.ErrorIs(t, err, afc.StatusObjectNotFound)

	err = c.Remove(ctx, "/iTunesRestore")
	assert.ErrorIs(t, err, afc.ErrDirNotEmpty)
	require.NoError(t, c.Rename(ctx, "/iTunesRestore/RestoreApplications.plist", "/iTunesRestore/x"))
	require.NoError(t, c.Remove(ctx, "/iTunesRestore/x"))
	require.NoError(t, c.Remove(ctx, "/iTunesRestore"))
	assert.NoDirExists(t, filepath.Join(root, "iTunesRestore"))

	require.NoError(t, c.MakeDir(ctx, "/a/b/c"))
	require.NoError(t, c.WriteFile(ctx, "/a/b/c/f", []byte("x")))
	require.NoError(t, c.RemoveAll(ctx, "/a"))
	assert.NoDirExists(t, filepath.Join(root, "a"))
	assert.ErrorIs(t, c.RemoveAll(ctx, "/a"), afc.StatusObjectNotFound)
	assert.ErrorIs(t, c.RemoveAll(ctx, "/"), afc.StatusPermDenied)

	_, err = c.Open(ctx, "/iTunes_Control", afc.ModeRdOnly)
	assert.ErrorIs(t, err, afc.StatusObjectIsDir)
	_, err = c.Open(ctx, "/missing", afc.ModeRW)
	assert.ErrorIs(t, err, afc.StatusObjectNotFound)

	info, err := c.DeviceInfo(ctx)
	require.NoError(t, err)
	assert.Equal(t, "34359738368", info["FSFreeBytes"])
}

func TestFileHandleOps(t *testing.T) {
	c := dial(t, newServer(t, nil, t.TempDir()))
	ctx := context.Background()
	f, err := c.Open(ctx, "/f", afc.ModeWR)
	require.NoError(t, err)
	assert.NotZero(t, f.Handle())
	_, err = f.Write(ctx, []byte("0123456789"))
	require.NoError(t, err)
	off, err := f.Tell(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(10), off)
	require.NoError(t, f.Seek(ctx, 2, 0))
	buf := make([]byte, 3)
	n, err := f.Read(ctx, buf)
	require.NoError(t, err)
	assert.Equal(t, "234", string(buf[:n]))
	require.NoError(t, f.Truncate(ctx, 4))
	require.NoError(t, f.Close(ctx))
	assert.ErrorIs(t, f.Close(ctx), afc.StatusInvalidArg, "handle is gone")
	got, err := c.ReadFile(ctx, "/f", 100)
	require.NoError(t, err)
	assert.Equal(t, "0123", string(got))
}

func TestPathsStayInsideRoot(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "afc")
	require.NoError(t, os.Mkdir(root, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(parent, "secret"), []byte("s"), 0o644))
	require.NoError(t, os.Symlink(filepath.Join(parent, "secret"), filepath.Join(root, "link")))
	c := dial(t, newServer(t, nil, root))
	ctx := context.Background()

	_, err := c.Stat(ctx, "../secret")
	assert.ErrorIs(t, err, afc.StatusObjectNotFound, "../ is clamped at the root")
	require.NoError(t, c.WriteFile(ctx, "/../../escape", []byte("x")))
	assert.FileExists(t, filepath.Join(root, "escape"))
	assert.NoFileExists(t, filepath.Join(parent, "escape"))

	_, err = c.Open(ctx, "/link", afc.ModeRdOnly)
	assert.Error(t, err, "a symlink leaving the root is not followed")
	fi, err := c.Stat(ctx, "/link")
	require.NoError(t, err)
	assert.Equal(t, afc.TypeSymlink, fi.Type)
	assert.Equal(t, filepath.Join(parent, "secret"), fi.LinkTarget)
	require.NoError(t, c.Rename(ctx, "/escape", "../../moved"))
	assert.FileExists(t, filepath.Join(root, "moved"))
}

func TestSyncLockAcrossConnections(t *testing.T) {
	root := t.TempDir()
	locks := NewLockTable()
	// Two servers of one phone (e.g. two lockdownd service starts) share the table.
	a := dial(t, newServer(t, locks, root))
	b := dial(t, newServer(t, locks, root))
	ctx := context.Background()

	fa, err := a.Open(ctx, SyncLockPath, afc.ModeRW)
	require.NoError(t, err)
	fb, err := b.Open(ctx, SyncLockPath, afc.ModeRW)
	require.NoError(t, err)
	require.NoError(t, fa.Lock(ctx, afc.LockExclusive))
	assert.ErrorIs(t, fb.Lock(ctx, afc.LockExclusive), afc.StatusOpWouldBlock)
	assert.ErrorIs(t, fb.Lock(ctx, afc.LockShared), afc.StatusOpWouldBlock)
	require.NoError(t, fa.Lock(ctx, afc.LockExclusive), "re-locking by the holder succeeds")
	require.NoError(t, fa.Lock(ctx, afc.LockUnlock))
	require.NoError(t, fb.Lock(ctx, afc.LockExclusive))
	assert.ErrorIs(t, fa.Lock(ctx, afc.LockExclusive), afc.StatusOpWouldBlock)
	require.NoError(t, fb.Close(ctx), "closing the handle drops its lock")
	require.NoError(t, fa.Lock(ctx, afc.LockExclusive))
	assert.True(t, locks.Held(SyncLockPath))

	// A dropped connection releases its locks too.
	require.NoError(t, a.Close())
	require.Eventually(t, func() bool { return !locks.Held(SyncLockPath) }, timeout, tick)
	fb, err = b.Open(ctx, SyncLockPath, afc.ModeRW)
	require.NoError(t, err)
	require.NoError(t, fb.Lock(ctx, afc.LockExclusive))
}

func TestLockTable(t *testing.T) {
	lt := NewLockTable()
	h1, h2 := new(int), new(int)
	assert.Equal(t, afc.StatusSuccess, lt.Apply("/l", h1, afc.LockShared))
	assert.Equal(t, afc.StatusSuccess, lt.Apply("/l", h2, afc.LockShared))
	assert.Equal(t, afc.StatusOpWouldBlock, lt.Apply("/l", h1, afc.LockExclusive))
	lt.Release("/l", h2)
	assert.Equal(t, afc.StatusSuccess, lt.Apply("/l", h1, afc.LockExclusive), "sole shared holder upgrades")
	assert.Equal(t, afc.StatusSuccess, lt.Apply("/l", h1, afc.LockShared), "downgrade")
	assert.Equal(t, afc.StatusSuccess, lt.Apply("/l", h2, afc.LockShared))
	assert.Equal(t, afc.StatusInvalidArg, lt.Apply("/l", h2, afc.LockOp(2)), "blocking locks are refused")
	lt.Release("/l", h1)
	lt.Release("/l", h2)
	assert.False(t, lt.Held("/l"))
	assert.Equal(t, afc.StatusSuccess, lt.Apply("/other", h1, afc.LockExclusive), "per path")
}

func TestServeEndsOnContext(t *testing.T) {
	srv := newServer(t, nil, t.TempDir())
	cc, sc := net.Pipe()
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, sc) }()
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
}
