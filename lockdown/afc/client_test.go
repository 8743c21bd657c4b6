package afc

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ibackup/ibackup/fakedevice/fakenet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tcpPair returns both ends of a buffered loopback connection.
func tcpPair(t *testing.T) (client, server net.Conn) { return fakenet.Pipe(t) }

// scriptedPeer answers each request with reply(req); a nil reply sends
// nothing. It records the requests.
type scriptedPeer struct {
	mu   sync.Mutex
	reqs []*Packet
	done chan struct{}
}

func startPeer(t *testing.T, conn net.Conn, reply func(*Packet) *Packet) *scriptedPeer {
	t.Helper()
	p := &scriptedPeer{done: make(chan struct{})}
	fr := NewFramer(conn, conn)
	go func() {
		defer close(p.done)
		for {
			req, err := fr.ReadPacket()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.reqs = append(p.reqs, req)
			p.mu.Unlock()
			if r := reply(req); r != nil {
				if fr.WritePacket(r) != nil {
					return
				}
			}
		}
	}()
	t.Cleanup(func() { _ = conn.Close(); <-p.done })
	return p
}

func status(num uint64, st Status) *Packet {
	return &Packet{Num: num, Op: OpStatus, HeaderData: AppendUint64(nil, uint64(st))}
}

func TestClientRequestsOnTheWire(t *testing.T) {
	cc, sc := tcpPair(t)
	peer := startPeer(t, sc, func(req *Packet) *Packet {
		switch req.Op {
		case OpFileRefOpen:
			return &Packet{Num: req.Num, Op: OpFileRefOpenResult, HeaderData: AppendUint64(nil, 42)}
		case OpFileRefLock:
			return status(req.Num, StatusOpWouldBlock)
		case OpReadDir:
			return &Packet{Num: req.Num, Op: OpData, Payload: AppendStrings(nil, ".", "..", "a", "b")}
		}
		return status(req.Num, StatusSuccess)
	})
	c := NewClient(cc)
	defer c.Close()
	ctx := context.Background()

	f, err := c.Open(ctx, "/com.apple.itunes.lock_sync", ModeRW)
	require.NoError(t, err)
	assert.Equal(t, uint64(42), f.Handle())
	err = f.Lock(ctx, LockExclusive)
	assert.ErrorIs(t, err, StatusOpWouldBlock)
	var ae *Error
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, OpFileRefLock, ae.Op)
	names, err := c.ReadDir(ctx, "/")
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, names)
	require.NoError(t, c.Rename(ctx, "/x", "/y"))
	require.NoError(t, c.RemoveAll(ctx, "/iTunesRestore"))

	peer.mu.Lock()
	defer peer.mu.Unlock()
	require.Len(t, peer.reqs, 5)
	for i, r := range peer.reqs {
		assert.Equal(t, uint64(i+1), r.Num, "packet numbers start at 1 and increment")
	}
	assert.Equal(t, append(AppendUint64(nil, 2), "/com.apple.itunes.lock_sync\x00"...), peer.reqs[0].HeaderData)
	assert.Equal(t, AppendUint64(AppendUint64(nil, 42), 6), peer.reqs[1].HeaderData)
	assert.Equal(t, []byte("/x\x00/y\x00"), peer.reqs[3].HeaderData)
	assert.Equal(t, OpRemovePathAndContents, peer.reqs[4].Op)
}

func TestClientWrongPacketNumberBreaks(t *testing.T) {
	cc, sc := tcpPair(t)
	startPeer(t, sc, func(req *Packet) *Packet { return status(req.Num+1, StatusSuccess) })
	c := NewClient(cc)
	defer c.Close()
	err := c.MakeDir(context.Background(), "/a")
	assert.ErrorIs(t, err, ErrBroken)
	err = c.MakeDir(context.Background(), "/a")
	assert.ErrorIs(t, err, ErrBroken, "stays broken")
}

func TestClientCancelInterruptsAndBreaks(t *testing.T) {
	cc, sc := tcpPair(t)
	startPeer(t, sc, func(*Packet) *Packet { return nil }) // never answers
	c := NewClient(cc)
	defer c.Close()
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("user gave up")
	time.AfterFunc(20*time.Millisecond, func() { cancel(cause) })
	_, err := c.Stat(ctx, "/x")
	assert.ErrorIs(t, err, cause)
	assert.ErrorIs(t, err, ErrBroken)

	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel2()
	c2 := NewClient(cc)
	_, err = c2.Stat(ctx2, "/x")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestClientDataReplies(t *testing.T) {
	cc, sc := tcpPair(t)
	reads := 0
	startPeer(t, sc, func(req *Packet) *Packet {
		switch req.Op {
		case OpGetFileInfo:
			return &Packet{Num: req.Num, Op: OpData, Payload: (&FileInfo{Size: 5, Type: TypeRegular}).Encode()}
		case OpFileRefOpen:
			return &Packet{Num: req.Num, Op: OpFileRefOpenResult, HeaderData: AppendUint64(nil, 1)}
		case OpFileRefRead:
			reads++
			if reads == 1 {
				// Status-style layout: the data in the header data part.
				return &Packet{Num: req.Num, Op: OpData, HeaderData: []byte("hel"), Payload: []byte("lo")}
			}
			return &Packet{Num: req.Num, Op: OpData}
		case OpFileRefTell:
			return &Packet{Num: req.Num, Op: OpFileRefTellResult, HeaderData: AppendUint64(nil, 5)}
		case OpGetDevInfo:
			return &Packet{Num: req.Num, Op: OpData, Payload: AppendStrings(nil, "Model", "iPhone10,3")}
		}
		return status(req.Num, StatusSuccess)
	})
	c := NewClient(cc)
	defer c.Close()
	ctx := context.Background()
	b, err := c.ReadFile(ctx, "/iTunes_Control/iTunes/iTunesPrefs", 1<<20)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	_, err = c.ReadFile(ctx, "/big", 4)
	assert.ErrorIs(t, err, ErrPacketTooBig)
	f, err := c.Open(ctx, "/f", ModeRdOnly)
	require.NoError(t, err)
	n, err := f.Read(ctx, make([]byte, 10))
	assert.Equal(t, 0, n)
	assert.ErrorIs(t, err, io.EOF)
	off, err := f.Tell(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(5), off)
	info, err := c.DeviceInfo(ctx)
	require.NoError(t, err)
	assert.Equal(t, "iPhone10,3", info["Model"])
	require.NoError(t, c.Close())
	assert.ErrorIs(t, c.MakeDir(ctx, "/a"), ErrClosed)
}

func TestLockRetry(t *testing.T) {
	cc, sc := tcpPair(t)
	var tries atomic.Int32
	startPeer(t, sc, func(req *Packet) *Packet {
		if req.Op == OpFileRefLock {
			if tries.Add(1) < 3 {
				return status(req.Num, StatusOpWouldBlock)
			}
		}
		return status(req.Num, StatusSuccess)
	})
	c := NewClient(cc)
	defer c.Close()
	f := &File{c: c, path: "/l", handle: 3}
	require.NoError(t, f.LockRetry(context.Background(), LockExclusive, 5, time.Millisecond))
	assert.Equal(t, int32(3), tries.Load())

	tries.Store(-100)
	err := f.LockRetry(context.Background(), LockExclusive, 2, time.Millisecond)
	assert.ErrorIs(t, err, StatusOpWouldBlock)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = f.LockRetry(ctx, LockExclusive, 2, time.Hour)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestCloseInterruptsRequest(t *testing.T) {
	cc, sc := tcpPair(t)
	got := make(chan struct{})
	startPeer(t, sc, func(*Packet) *Packet { close(got); return nil })
	c := NewClient(cc)
	res := make(chan error, 1)
	go func() { res <- c.MakeDir(context.Background(), "/a") }()
	<-got
	require.NoError(t, c.Close())
	assert.ErrorIs(t, <-res, ErrClosed)
}
