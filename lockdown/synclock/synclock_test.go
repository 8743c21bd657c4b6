package synclock

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ibackup/ibackup/fakedevice/afcd"
	"github.com/ibackup/ibackup/fakedevice/notifyd"
	"github.com/ibackup/ibackup/lockdown/afc"
	"github.com/ibackup/ibackup/lockdown/notifyproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// phone is one fake phone: an AFC server with its lock table and a
// notification hub.
type phone struct {
	afc *afcd.Server
	np  *notifyd.Server
	hub *notifyd.Hub
}

func newPhone(t *testing.T) *phone {
	t.Helper()
	a, err := afcd.New(afcd.Config{Root: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	np := notifyd.New(notifyd.Config{})
	return &phone{afc: a, np: np, hub: np.Hub()}
}

// serve connects a loopback TCP conn to serve and returns the host end.
func serve(t *testing.T, serve func(context.Context, net.Conn) error) net.Conn {
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
		_ = serve(ctx, sconn)
	}()
	t.Cleanup(func() { _ = conn.Close(); cancel(); wg.Wait() })
	return conn
}

// host is one backup host's AFC and notification_proxy clients.
func (p *phone) host(t *testing.T) (*afc.Client, *notifyproxy.Client) {
	t.Helper()
	a := afc.NewClient(serve(t, p.afc.Serve))
	np := notifyproxy.NewClient(serve(t, p.np.Serve), nil)
	t.Cleanup(func() { _ = np.Close(); _ = a.Close() })
	return a, np
}

// waitObservers waits until n host connections observe everything, so a
// phone post is sure to be relayed.
func (p *phone) waitObservers(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, name := range ObservedNames {
			if p.hub.Observers(name) != n {
				return false
			}
		}
		return true
	}, 5*time.Second, time.Millisecond)
}

func fast(attempts int) Options {
	return Options{Attempts: attempts, Interval: time.Millisecond}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAcquireRelease(t *testing.T) {
	p := newPhone(t)
	a, np := p.host(t)
	ctx := ctxT(t)

	l, err := Acquire(ctx, a, np)
	require.NoError(t, err)
	assert.True(t, p.afc.Locks().Held(LockPath))
	require.NoError(t, p.hub.WaitHostPost(ctx, notifyproxy.SyncDidStart))
	for _, n := range ObservedNames {
		assert.Equal(t, 1, p.hub.Observers(n), n, "observed before the first post")
	}
	assert.Equal(t, []string{notifyproxy.SyncWillStart, notifyproxy.SyncLockRequest, notifyproxy.SyncDidStart}, p.hub.HostPosts())

	require.NoError(t, l.Release(ctx))
	require.NoError(t, l.Release(ctx), "second Release is a no-op")
	assert.False(t, p.afc.Locks().Held(LockPath))
	require.NoError(t, p.hub.WaitHostPost(ctx, notifyproxy.SyncDidFinish))
	_, open := <-l.Events()
	assert.False(t, open, "events close at Release")
	require.NoError(t, np.Shutdown(ctx))
}

func count(ss []string, s string) int {
	n := 0
	for _, x := range ss {
		if x == s {
			n++
		}
	}
	return n
}

func TestTwoHostsContend(t *testing.T) {
	p := newPhone(t)
	a1, np1 := p.host(t)
	a2, np2 := p.host(t)
	ctx := ctxT(t)

	l1, err := AcquireWithOptions(ctx, a1, np1, fast(5))
	require.NoError(t, err)

	// The second host gives up after its attempts and cleans up.
	_, err = AcquireWithOptions(ctx, a2, np2, fast(3))
	require.ErrorIs(t, err, ErrLockTimeout)
	assert.ErrorIs(t, err, afc.StatusOpWouldBlock)
	require.Eventually(t, func() bool { return count(p.hub.HostPosts(), notifyproxy.SyncDidFinish) == 1 }, 5*time.Second, time.Millisecond,
		"a failed acquisition still posts syncDidFinish")
	assert.True(t, p.afc.Locks().Held(LockPath), "host 1 keeps the lock")

	// It tries again; host 1 releases while it waits; it gets the lock.
	got := make(chan error, 1)
	var l2 *Lock
	go func() {
		var err error
		l2, err = AcquireWithOptions(ctx, a2, np2, Options{Attempts: 2000, Interval: 2 * time.Millisecond})
		got <- err
	}()
	require.Eventually(t, func() bool { return count(p.hub.HostPosts(), notifyproxy.SyncLockRequest) == 3 }, 5*time.Second, time.Millisecond)
	require.NoError(t, l1.Release(ctx))
	require.NoError(t, <-got)
	assert.True(t, p.afc.Locks().Held(LockPath))
	require.NoError(t, l2.Release(ctx))
	assert.False(t, p.afc.Locks().Held(LockPath))
}

// A cancel posted from the phone during a long operation ends it cleanly:
// the bound context ends with ErrCancelledOnDevice, the event is reported,
// and Release still unlocks and posts syncDidFinish.
func TestCancelOnPhoneDuringBackup(t *testing.T) {
	p := newPhone(t)
	a, np := p.host(t)
	ctx := ctxT(t)
	l, err := AcquireWithOptions(ctx, a, np, fast(1))
	require.NoError(t, err)

	backup := func(ctx context.Context) error { // simulated long operation
		<-ctx.Done()
		return context.Cause(ctx)
	}
	bctx, cancel := l.Bind(ctx)
	defer cancel()
	result := make(chan error, 1)
	go func() { result <- backup(bctx) }()

	p.waitObservers(t, 1)
	require.Equal(t, 1, p.hub.Post(notifyproxy.SyncCancelRequest), "the user taps Cancel")
	assert.ErrorIs(t, <-result, ErrCancelledOnDevice)
	ev := <-l.Events()
	assert.Equal(t, EventCancelRequest, ev.Kind)
	assert.NotEmpty(t, ev.Hint())
	<-l.Cancelled()

	late, cancelLate := l.Bind(ctx)
	defer cancelLate()
	assert.ErrorIs(t, context.Cause(late), ErrCancelledOnDevice, "binding after the cancel is cancelled at once")

	require.NoError(t, l.Release(ctx))
	assert.False(t, p.afc.Locks().Held(LockPath))
	require.NoError(t, p.hub.WaitHostPost(ctx, notifyproxy.SyncDidFinish))
}

func TestPasscodePromptEvents(t *testing.T) {
	p := newPhone(t)
	a, np := p.host(t)
	ctx := ctxT(t)
	l, err := AcquireWithOptions(ctx, a, np, fast(1))
	require.NoError(t, err)
	defer l.Release(ctx)

	p.waitObservers(t, 1)
	p.hub.ShowPasscodePrompt()
	p.hub.Post(notifyproxy.BackupDomainChanged)
	p.hub.DismissPasscodePrompt()
	var kinds []EventKind
	for range 3 {
		ev := <-l.Events()
		kinds = append(kinds, ev.Kind)
		if ev.Kind == EventPasscodeRequired {
			assert.Equal(t, "Enter the passcode on the device to continue.", ev.Hint())
		}
	}
	assert.Equal(t, []EventKind{EventPasscodeRequired, EventDomainChanged, EventPasscodeDismissed}, kinds)
	select {
	case <-l.Cancelled():
		t.Fatal("a passcode prompt is not a cancel")
	default:
	}
}

func TestCancelOnPhoneWhileWaitingForLock(t *testing.T) {
	p := newPhone(t)
	a1, np1 := p.host(t)
	a2, np2 := p.host(t)
	ctx := ctxT(t)
	l1, err := AcquireWithOptions(ctx, a1, np1, fast(1))
	require.NoError(t, err)
	defer l1.Release(ctx)

	got := make(chan error, 1)
	go func() {
		_, err := AcquireWithOptions(ctx, a2, np2, Options{Attempts: 100000, Interval: time.Millisecond})
		got <- err
	}()
	require.Eventually(t, func() bool { return count(p.hub.HostPosts(), notifyproxy.SyncLockRequest) == 2 }, 5*time.Second, time.Millisecond)
	// Only host 2 is waiting; both observe, both are told.
	p.waitObservers(t, 2)
	p.hub.Post(notifyproxy.SyncCancelRequest)
	err = <-got
	assert.ErrorIs(t, err, ErrCancelledOnDevice)
	require.Eventually(t, func() bool { return count(p.hub.HostPosts(), notifyproxy.SyncDidFinish) == 1 }, 5*time.Second, time.Millisecond)
	// The AFC client survived the cancel: host 2 can still use it.
	_, err = a2.Stat(ctx, LockPath)
	assert.NoError(t, err)
}

func TestCallerContextEndsAcquisition(t *testing.T) {
	p := newPhone(t)
	a1, np1 := p.host(t)
	a2, np2 := p.host(t)
	l1, err := AcquireWithOptions(ctxT(t), a1, np1, fast(1))
	require.NoError(t, err)
	defer l1.Release(context.Background())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan error, 1)
	go func() {
		_, err := AcquireWithOptions(ctx, a2, np2, Options{Attempts: 100000, Interval: time.Millisecond})
		got <- err
	}()
	require.Eventually(t, func() bool { return count(p.hub.HostPosts(), notifyproxy.SyncLockRequest) == 2 }, 5*time.Second, time.Millisecond,
		"posts: %v", p.hub.HostPosts())
	cancel()
	assert.ErrorIs(t, <-got, context.Canceled)
	require.Eventually(t, func() bool {
		return slices.Contains(p.hub.HostPosts(), notifyproxy.SyncDidFinish)
	}, 5*time.Second, time.Millisecond, "cleanup runs under a fresh context")
}

func TestDroppedEventsAndUnknownNames(t *testing.T) {
	p := newPhone(t)
	a, np := p.host(t)
	ctx := ctxT(t)
	opts := fast(1)
	opts.EventBuffer = 1
	posted := make(chan string, 10)
	opts.Post = func(ctx context.Context, name string) error {
		posted <- name
		return np.Post(ctx, name)
	}
	l, err := AcquireWithOptions(ctx, a, np, opts)
	require.NoError(t, err)
	assert.Equal(t, notifyproxy.SyncWillStart, <-posted, "Options.Post is used")
	p.waitObservers(t, 1)
	p.hub.Post(notifyproxy.SyncSuspendRequest)
	p.hub.Post(notifyproxy.SyncResumeRequest)
	p.hub.Post(notifyproxy.SyncCancelRequest)
	<-l.Cancelled() // not lost although the buffer is full
	assert.Equal(t, EventSuspendRequest, (<-l.Events()).Kind)
	assert.Equal(t, 2, l.Dropped())
	require.NoError(t, l.Release(ctx))
}

func TestDeviceErrorOnLock(t *testing.T) {
	// A lock file that cannot be opened fails cleanly and still posts
	// syncDidFinish.
	p := newPhone(t)
	a, np := p.host(t)
	ctx := ctxT(t)
	require.NoError(t, a.Remove(ctx, LockPath))
	_, err := AcquireWithOptions(ctx, a, np, fast(1))
	assert.ErrorIs(t, err, afc.StatusObjectNotFound)
	require.Eventually(t, func() bool {
		return slices.Contains(p.hub.HostPosts(), notifyproxy.SyncDidFinish)
	}, 5*time.Second, time.Millisecond)
	assert.False(t, errors.Is(err, ErrLockTimeout))
	assert.Equal(t, "passcode-required", EventPasscodeRequired.String())
}
