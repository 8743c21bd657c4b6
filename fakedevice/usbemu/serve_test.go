package usbemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ibackup/ibackup/fakedevice/devmux"
	"github.com/ibackup/ibackup/fakedevice/memlink"
	"github.com/ibackup/ibackup/usbmux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// echoPhone is a phone for ServeUSB: every Connect makes a fresh in-memory
// link whose device end devmux serves with the test services.
type echoPhone struct {
	connects atomic.Int32
	wg       sync.WaitGroup
}

func (p *echoPhone) connect(ctx context.Context) (Link, error) {
	p.connects.Add(1)
	host, dev, _ := memlink.New(memlink.Options{})
	srv := devmux.New(dev, nil)
	l, err := srv.Listen(EchoPort)
	if err != nil {
		return nil, err
	}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); Echo(c) }()
		}
	}()
	go func() {
		defer p.wg.Done()
		_ = srv.Serve(context.Background())
		_ = dev.Close()
	}()
	return host, nil
}

// serveFake runs ServeUSB for phone on a fakeBus and returns the bus and
// ServeUSB's result channel.
func serveFake(t *testing.T, ctx context.Context, connect ConnectFunc) (*fakeBus, <-chan error) {
	t.Helper()
	phoneEnd, busEnd := pipe(t)
	res := make(chan error, 1)
	go func() { res <- ServeUSB(ctx, phoneEnd, Identity{UDID: "00008030-001A2B3C4D5E6F70"}, connect, nil) }()
	b := &fakeBus{t: t, conn: busEnd}
	f, err := ReadFrame(busEnd)
	require.NoError(t, err)
	require.Equal(t, FrameHello, f.Type)
	require.NoError(t, json.Unmarshal(f.Payload, &b.hello))
	t.Cleanup(func() { _ = busEnd.Close() })
	return b, res
}

func TestServeUSB(t *testing.T) {
	var phone echoPhone
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, res := serveFake(t, ctx, phone.connect)

	// The host starts over twice by hand: each VERSION gets a fresh phone
	// link that answers it (§2.2, 8-byte header, major 2).
	for i := 1; i <= 2; i++ {
		b.send(FrameOut, versionPacket())
		reply := b.recvIn()
		require.Len(t, reply, 20)
		assert.Equal(t, uint32(0), binary.BigEndian.Uint32(reply))
		assert.Equal(t, uint32(2), binary.BigEndian.Uint32(reply[8:]))
		assert.Equal(t, int32(i), phone.connects.Load())
	}

	// Then a real host mux: a third session, data both ways.
	host := &hostLink{b: b}
	mctx, mcancel := context.WithTimeout(ctx, 10*time.Second)
	defer mcancel()
	m, err := usbmux.NewMux(mctx, host, nil)
	require.NoError(t, err)
	conn, err := m.Dial(mctx, EchoPort)
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	msg := make([]byte, 200<<10)
	_, _ = rand.Read(msg)
	go func() { _, _ = conn.Write(msg) }()
	back := make([]byte, len(msg))
	_, err = io.ReadFull(conn, back)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(msg, back))
	assert.Equal(t, int32(3), phone.connects.Load())

	cancel() // unplugs
	assert.NoError(t, <-res)
	select {
	case <-m.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("host mux did not see the unplug")
	}
	_ = m.Close()
	phone.wg.Wait()
}

func TestServeUSBUnpluggedByBus(t *testing.T) {
	var phone echoPhone
	b, res := serveFake(t, context.Background(), phone.connect)
	b.send(FrameOut, versionPacket())
	b.recvIn()
	require.NoError(t, b.conn.Close())
	assert.ErrorIs(t, <-res, ErrUnplugged)
	phone.wg.Wait()
}

func TestServeUSBConnectFails(t *testing.T) {
	_, res := serveFake(t, context.Background(), func(context.Context) (Link, error) { return nil, errTest })
	assert.ErrorIs(t, <-res, errTest)
}

func TestServeUSBPhoneLinkFails(t *testing.T) {
	var host Link
	connect := func(context.Context) (Link, error) {
		h, dev, _ := memlink.New(memlink.Options{})
		_ = dev.Close() // the phone dies at once
		host = h
		return h, nil
	}
	_, res := serveFake(t, context.Background(), connect)
	err := <-res
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrUnplugged)
	assert.Contains(t, err.Error(), "usbemu: phone link")
	_ = host
}

func TestSourceService(t *testing.T) {
	a, b := pipe(t)
	done := make(chan struct{})
	go func() { defer close(done); Source(b) }()
	_, err := a.Write([]byte("100000\n"))
	require.NoError(t, err)
	got, err := io.ReadAll(a)
	require.NoError(t, err)
	want := make([]byte, 100000)
	Pattern(want, 0)
	assert.Equal(t, want, got)
	<-done
	require.NoError(t, a.Close())

	// A bad request just closes.
	a, b = pipe(t)
	go Source(b)
	_, err = a.Write([]byte("lots\n"))
	require.NoError(t, err)
	got, err = io.ReadAll(a)
	require.NoError(t, err)
	assert.Empty(t, got)
	require.NoError(t, a.Close())
}

func TestPatternOffset(t *testing.T) {
	whole := make([]byte, 1000)
	Pattern(whole, 0)
	part := make([]byte, 300)
	Pattern(part, 600)
	assert.Equal(t, whole[600:900], part)
	assert.Equal(t, byte(250), whole[250])
	assert.Equal(t, byte(0), whole[251])
}

var errTest = errors.New("test: connect failed")
