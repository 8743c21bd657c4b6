package usbemu

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeBus is the bus end of one phone connection, played by the test in
// place of usbbus.py: it reads the HELLO and then sends OUT URBs and
// events and reads IN transfers, frame by frame.
type fakeBus struct {
	t     *testing.T
	conn  net.Conn
	hello Hello
}

// pipe returns a connected pair of UNIX stream sockets (buffered both
// ways, unlike net.Pipe).
func pipe(t *testing.T) (a, b net.Conn) {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "bus.sock"))
	require.NoError(t, err)
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			acc <- nil
			return
		}
		acc <- c
	}()
	a, err = net.Dial("unix", l.Addr().String())
	require.NoError(t, err)
	b = <-acc
	require.NotNil(t, b)
	return a, b
}

// plugFake plugs a phone into a fakeBus and returns both ends.
func plugFake(t *testing.T, opts *Options) (*Device, *fakeBus) {
	t.Helper()
	phoneEnd, busEnd := pipe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := Plug(ctx, phoneEnd, Identity{UDID: "00008030-001A2B3C4D5E6F70"}, opts)
	require.NoError(t, err)
	b := &fakeBus{t: t, conn: busEnd}
	f, err := ReadFrame(busEnd)
	require.NoError(t, err)
	require.Equal(t, FrameHello, f.Type)
	require.NoError(t, json.Unmarshal(f.Payload, &b.hello))
	t.Cleanup(func() {
		_ = d.Close()
		_ = busEnd.Close()
	})
	return d, b
}

func (b *fakeBus) send(typ FrameType, p []byte) {
	b.t.Helper()
	frame, err := AppendFrame(nil, Frame{Type: typ, Payload: p})
	require.NoError(b.t, err)
	_, err = b.conn.Write(frame)
	require.NoError(b.t, err)
}

func (b *fakeBus) recvIn() []byte {
	b.t.Helper()
	require.NoError(b.t, b.conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	f, err := ReadFrame(b.conn)
	require.NoError(b.t, err)
	require.Equal(b.t, FrameIn, f.Type)
	return f.Payload
}

func accept(t *testing.T, d *Device) *Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := d.Accept(ctx)
	require.NoError(t, err)
	return s
}

func readTransfer(t *testing.T, s *Session) []byte {
	t.Helper()
	buf := make([]byte, maxTransfer)
	n, err := s.Read(buf)
	require.NoError(t, err)
	return buf[:n]
}

func TestPlugSendsHello(t *testing.T) {
	_, b := plugFake(t, nil)
	assert.Equal(t, "00008030001A2B3C4D5E6F70", b.hello.Strings["3"])
	assert.Equal(t, MuxIn, b.hello.MuxIn)
}

// TestTransferAssembly: OUT URBs of whole packets continue a transfer, a
// short URB or a ZLP ends it (§1.5).
func TestTransferAssembly(t *testing.T) {
	d, b := plugFake(t, nil)
	s := accept(t, d)
	b.send(FrameOut, bytes.Repeat([]byte{1}, 512))
	b.send(FrameOut, []byte{2, 2, 2})
	assert.Len(t, readTransfer(t, s), 515, "512 without ZLP glued to the next")
	b.send(FrameOut, bytes.Repeat([]byte{3}, 1024))
	b.send(FrameOut, nil)
	assert.Len(t, readTransfer(t, s), 1024, "ZLP ends the transfer")
	b.send(FrameOut, nil) // a lone ZLP delivers nothing
	b.send(FrameOut, []byte{4})
	assert.Equal(t, []byte{4}, readTransfer(t, s))

	// A short buffer gets the transfer in parts.
	b.send(FrameOut, []byte{5, 6, 7})
	small := make([]byte, 2)
	n, err := s.Read(small)
	require.NoError(t, err)
	assert.Equal(t, []byte{5, 6}, small[:n])
	n, err = s.Read(small)
	require.NoError(t, err)
	assert.Equal(t, []byte{7}, small[:n])

	_, err = s.Write([]byte("to host"))
	require.NoError(t, err)
	assert.Equal(t, []byte("to host"), b.recvIn())
}

func TestEventsReachOptions(t *testing.T) {
	got := make(chan Event, 1)
	_, b := plugFake(t, &Options{OnEvent: func(e Event) { got <- e }})
	b.send(FrameEvent, []byte(`{"kind":"claim_interface","value":1}`))
	b.send(FrameType(99), []byte("ignored"))
	select {
	case e := <-got:
		assert.Equal(t, Event{Kind: EventClaim, Value: 1}, e)
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
}

// TestNewVersionStartsNewSession: a second VERSION ends the session and
// starts the next one, whose first transfer is that VERSION.
func TestNewVersionStartsNewSession(t *testing.T) {
	d, b := plugFake(t, nil)
	s1 := accept(t, d)
	b.send(FrameOut, versionPacket())
	assert.Equal(t, versionPacket(), readTransfer(t, s1))
	b.send(FrameOut, []byte{9})
	assert.Equal(t, []byte{9}, readTransfer(t, s1))

	b.send(FrameOut, versionPacket())
	s2 := accept(t, d)
	_, err := s1.Read(make([]byte, 10))
	assert.ErrorIs(t, err, io.EOF)
	_, err = s1.Write([]byte{1})
	assert.ErrorIs(t, err, ErrSessionEnded)
	assert.Equal(t, versionPacket(), readTransfer(t, s2))
	_, err = s2.Write([]byte{1})
	require.NoError(t, err)
	assert.Equal(t, []byte{1}, b.recvIn())

	// A session closed by the phone drops what the host still sends.
	require.NoError(t, s2.Close())
	b.send(FrameOut, []byte{1})
	_, err = s2.Read(make([]byte, 1))
	assert.ErrorIs(t, err, ErrSessionEnded)
}

func TestUnplugByBus(t *testing.T) {
	d, b := plugFake(t, nil)
	s := accept(t, d)
	require.NoError(t, b.conn.Close())
	_, err := s.Read(make([]byte, 10))
	assert.ErrorIs(t, err, ErrUnplugged)
	<-d.Done()
	_, err = d.Accept(context.Background())
	assert.ErrorIs(t, err, ErrUnplugged)
	_, err = s.Write([]byte{1})
	assert.ErrorIs(t, err, ErrUnplugged)
}

func TestUnplugByPhone(t *testing.T) {
	d, b := plugFake(t, nil)
	s := accept(t, d)
	require.NoError(t, d.Close())
	_, err := ReadFrame(b.conn)
	assert.ErrorIs(t, err, io.EOF, "the bus sees the connection close")
	_, err = s.Read(make([]byte, 10))
	assert.ErrorIs(t, err, ErrUnplugged)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = d.Accept(ctx)
	assert.Error(t, err)
}

func TestPlugFailures(t *testing.T) {
	a, b := pipe(t)
	defer b.Close()
	_, err := Plug(context.Background(), a, Identity{UDID: "bad"}, nil)
	assert.ErrorIs(t, err, ErrIdentity)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Plug(ctx, a, Identity{UDID: "00008030-001A2B3C4D5E6F70"}, nil)
	assert.ErrorIs(t, err, context.Canceled)
}

func versionPacket() []byte {
	b := make([]byte, 20)
	b[7] = 20
	b[11] = 2
	return b
}

// hostLink is the host side of a phone on a fakeBus, as libusb and the
// handler would present it: Write sends one OUT URB (and a ZLP when the
// length is a multiple of 512, like our adapter), Read returns one IN
// transfer.
type hostLink struct {
	b    *fakeBus
	mu   sync.Mutex
	once sync.Once
}

func (h *hostLink) Read(p []byte) (int, error) {
	f, err := ReadFrame(h.b.conn)
	if err != nil {
		return 0, err
	}
	if f.Type != FrameIn {
		return 0, nil // events etc.: not part of the link
	}
	return copy(p, f.Payload), nil
}

func (h *hostLink) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	frame, err := AppendFrame(nil, Frame{Type: FrameOut, Payload: p})
	if err != nil {
		return 0, err
	}
	if len(p)%MaxPacket == 0 {
		frame, _ = AppendFrame(frame, Frame{Type: FrameOut})
	}
	if _, err := h.b.conn.Write(frame); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (h *hostLink) Close() error {
	h.once.Do(func() { _ = h.b.conn.Close() })
	return nil
}
