package usbmux_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/devmux"
	"github.com/ibackup/ibackup/usbmux"
)

func TestHandshakeVariants(t *testing.T) {
	t.Run("v1 only", func(t *testing.T) {
		r := newRig(t, nil, &devmux.Options{VersionMajor: 1})
		assert.Equal(t, 1, r.mux.Version())
		echoRoundTrip(t, r)
	})
	t.Run("bad version", func(t *testing.T) {
		host, p := newPeer(t, 3)
		go p.handshake(3)
		_, err := usbmux.NewMux(context.Background(), host, nil)
		var ve *usbmux.VersionError
		require.ErrorAs(t, err, &ve)
		assert.Equal(t, uint32(3), ve.Major)
		assert.ErrorIs(t, err, usbmux.ErrVersion)
	})
	t.Run("control error", func(t *testing.T) {
		var got []usbmux.ControlMessage
		host, dev, _ := memlinkPair()
		srv := devmux.New(dev, &devmux.Options{NoVersionReply: true,
			Control: []usbmux.ControlMessage{{Type: usbmux.ControlTypeError, Text: "no pairing"}}})
		served := make(chan error, 1)
		go func() { served <- srv.Serve(context.Background()) }()
		_, err := usbmux.NewMux(context.Background(), host, &usbmux.Options{
			OnControl: func(m usbmux.ControlMessage) { got = append(got, m) }})
		assert.ErrorIs(t, err, usbmux.ErrDeviceControl)
		assert.Contains(t, err.Error(), "no pairing")
		assert.Equal(t, []usbmux.ControlMessage{{Type: usbmux.ControlTypeError, Text: "no pairing"}}, got)
		_ = srv.Close()
		<-served
	})
	t.Run("control info surfaced", func(t *testing.T) {
		got := make(chan usbmux.ControlMessage, 1)
		r := newRig(t, &usbmux.Options{OnControl: func(m usbmux.ControlMessage) { got <- m }},
			&devmux.Options{Control: []usbmux.ControlMessage{{Type: usbmux.ControlTypeInfo, Text: "hello\n"}}})
		select {
		case m := <-got:
			assert.Equal(t, usbmux.ControlMessage{Type: usbmux.ControlTypeInfo, Text: "hello"}, m)
		case <-time.After(5 * time.Second):
			t.Fatal("no control message")
		}
		echoRoundTrip(t, r)
	})
	t.Run("faceface magic", func(t *testing.T) {
		r := newRig(t, nil, &devmux.Options{Magic: 0xFACEFACE})
		assert.Equal(t, 2, r.mux.Version())
		echoRoundTrip(t, r)
	})
	t.Run("no reply, context ends", func(t *testing.T) {
		host, p := newPeer(t, 0)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := usbmux.NewMux(ctx, host, nil)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		_ = p
	})
	t.Run("TCP before VERSION is discarded", func(t *testing.T) {
		host, p := newPeer(t, 2)
		p.send(data(1, 1, 512), []byte("early")) // v1 framing: device not active yet
		m := startMux(t, host, p, nil)
		assert.Equal(t, 2, m.Version())
		p.quiet(50 * time.Millisecond)
	})
}

// echoRoundTrip serves an echo on device port 9 and checks a round trip through the mux.
func echoRoundTrip(t *testing.T, r *rig) {
	t.Helper()
	l, err := r.srv.Listen(9)
	require.NoError(t, err)
	defer l.Close()
	h, d := r.connPair(t, l, 9)
	defer h.Close()
	defer d.Close()
	go func() { _, _ = io.Copy(d, d) }()
	msg := fill(100000)
	go func() { _, _ = h.Write(msg) }()
	got := make([]byte, len(msg))
	_, err = io.ReadFull(h, got)
	require.NoError(t, err)
	assert.Equal(t, msg, got)
}

func TestDialRefused(t *testing.T) {
	host, p := newPeer(t, 2)
	m := startMux(t, host, p, nil)

	// RST|ACK: refused, no RST back (corrections.md M-a 5).
	errc := make(chan error, 1)
	go func() { _, err := m.Dial(context.Background(), 7777); errc <- err }()
	p.expectTCP("1->7777 SYN seq=0 ack=0 win=512")
	p.send(usbmux.TCPHeader{SrcPort: 7777, DstPort: 1, Ack: 1, Flags: usbmux.FlagRST | usbmux.FlagACK}, nil)
	assert.ErrorIs(t, <-errc, usbmux.ErrRefused)

	// Other flags: refused, and the host sends a RST.
	go func() { _, err := m.Dial(context.Background(), 7777); errc <- err }()
	p.expectTCP("2->7777 SYN seq=0 ack=0 win=512")
	p.send(usbmux.TCPHeader{SrcPort: 7777, DstPort: 2, Ack: 1, Flags: usbmux.FlagACK}, nil)
	assert.ErrorIs(t, <-errc, usbmux.ErrRefused)
	p.expectTCP("2->7777 RST seq=0 ack=0 win=512")

	// Real devmux: an unlistened port is refused.
	r := newRig(t, nil, nil)
	_, err := r.mux.Dial(context.Background(), 4444)
	assert.ErrorIs(t, err, usbmux.ErrRefused)
}

func TestDialContextCancel(t *testing.T) {
	host, p := newPeer(t, 2)
	m := startMux(t, host, p, nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := m.Dial(ctx, 7777); errc <- err }()
	p.expectTCP("1->7777 SYN seq=0 ack=0 win=512")
	cancel()
	assert.ErrorIs(t, <-errc, context.Canceled)
	p.expectTCP("1->7777 RST seq=0 ack=0 win=512")
	// A late SYN-ACK for the abandoned port gets an anonymous RST.
	p.send(synack(), nil)
	p.expectTCP("1->7777 RST seq=0 ack=0 win=0")
}

// TestAckRules checks corrections.md M-a 7–8: an immediate bare ACK per device packet that does
// not count the packet, and the ack advancing only when the reader consumes.
func TestAckRules(t *testing.T) {
	host, p := newPeer(t, 2)
	m := startMux(t, host, p, &usbmux.Options{DelayedAck: 20 * time.Millisecond})
	c := dial(t, m, p, synack())

	p.send(data(1, 1, 512), []byte("hello"))
	p.expectTCP("1->7777 ACK seq=1 ack=1 win=512") // immediate, data not yet consumed
	p.quiet(60 * time.Millisecond)                 // nothing consumed: no delayed ACK either

	buf := make([]byte, 5)
	_, err := io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf))
	p.expectTCP("1->7777 ACK seq=1 ack=6 win=512") // delayed ACK after consumption

	// A pure ACK from the device also gets an immediate bare ACK.
	p.send(data(6, 1, 512), nil)
	p.expectTCP("1->7777 ACK seq=1 ack=6 win=512")

	// Host data carries the current ack.
	_, err = c.Write([]byte("abc"))
	require.NoError(t, err)
	assert.Equal(t, []byte("abc"), p.expectTCP("1->7777 ACK seq=1 ack=6 win=512"))
}

func TestWindowExhaustion(t *testing.T) {
	host, p := newPeer(t, 2)
	m := startMux(t, host, p, nil)
	sa := synack()
	sa.Window = 2 // 512 bytes
	c := dial(t, m, p, sa)

	done := make(chan error, 1)
	go func() { _, err := c.Write(fill(1000)); done <- err }()
	assert.Len(t, p.expectTCP("1->7777 ACK seq=1 ack=1 win=512"), 512)
	p.quiet(30 * time.Millisecond) // budget exhausted
	p.send(data(1, 257, 2), nil)   // device consumed 256 bytes
	// The immediate bare ACK (writer goroutine) and the data (Write's goroutine) may come in
	// either order.
	assert.Equal(t, []string{"1->7777 ACK seq=513 ack=1 win=512 +256"}, p.dataAmongTwo())
	p.send(data(1, 769, 0), nil) // all acked, but window closed: stop
	p.expectTCP("1->7777 ACK seq=769 ack=1 win=512")
	p.quiet(30 * time.Millisecond)
	p.send(data(1, 769, 1), nil)
	assert.Equal(t, []string{"1->7777 ACK seq=769 ack=1 win=512 +232"}, p.dataAmongTwo())
	require.NoError(t, <-done)

	// A write deadline interrupts a writer waiting for window.
	require.NoError(t, c.SetWriteDeadline(time.Now().Add(20*time.Millisecond)))
	_, err := c.Write(fill(1000))
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout())
}

// TestBackPressure: the host withholds its ack while the reader does not consume, so a device
// that respects the window stalls; a device that ignores it overflows the buffer and is reset.
func TestBackPressure(t *testing.T) {
	host, p := newPeer(t, 2)
	m := startMux(t, host, p, &usbmux.Options{RecvBuffer: 4096})
	c := dial(t, m, p, synack())
	chunk := fill(1024)
	for i := range 4 {
		p.send(data(uint32(1+i*1024), 1, 512), chunk)
		p.expectTCP("1->7777 ACK seq=1 ack=1 win=512")
	}
	p.send(data(4097, 1, 512), []byte{1})
	p.expectTCP("1->7777 RST seq=1 ack=1 win=512")
	got, err := io.ReadAll(c)
	assert.ErrorIs(t, err, usbmux.ErrOverflow)
	assert.Empty(t, got, "overflow discards the buffer")
}

func TestPeerReset(t *testing.T) {
	host, p := newPeer(t, 2)
	m := startMux(t, host, p, nil)
	c := dial(t, m, p, synack())
	p.send(data(1, 1, 512), []byte("tail"))
	p.expectTCP("1->7777 ACK seq=1 ack=1 win=512")
	p.send(usbmux.TCPHeader{SrcPort: 7777, DstPort: 1, Seq: 5, Ack: 1, Flags: usbmux.FlagRST}, []byte("amnesia\n"))
	got, err := io.ReadAll(c) // buffered data first, then the reason
	assert.Equal(t, "tail", string(got))
	var re *usbmux.ResetError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "amnesia", re.Reason)
	_, err = c.Write([]byte("x"))
	assert.ErrorIs(t, err, usbmux.ErrReset)
	p.quiet(30 * time.Millisecond) // a RST is never answered

	// ACK|PSH on an established connection: torn down, payload discarded, RST sent back.
	c2 := dialPort(t, m, p, 2)
	p.send(usbmux.TCPHeader{SrcPort: 7777, DstPort: 2, Seq: 1, Ack: 1, Flags: usbmux.FlagACK | usbmux.FlagPSH, Window: 512}, []byte("lost"))
	p.expectTCP("2->7777 RST seq=1 ack=1 win=512")
	got, err = io.ReadAll(c2)
	assert.Empty(t, got)
	assert.ErrorIs(t, err, usbmux.ErrReset)
}

func dialPort(t *testing.T, m *usbmux.Mux, p *peer, hostPort uint16) *usbmux.Conn {
	t.Helper()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := m.Dial(context.Background(), 7777)
		assert.NoError(t, err)
		ch <- c
	}()
	p.expectTCP(portStr(hostPort) + "->7777 SYN seq=0 ack=0 win=512")
	sa := synack()
	sa.DstPort = hostPort
	p.send(sa, nil)
	c := <-ch
	p.expectTCP(portStr(hostPort) + "->7777 ACK seq=1 ack=1 win=512")
	return c.(*usbmux.Conn)
}

func portStr(p uint16) string { return usbmux.Addr{Port: p}.String()[len("host:"):] }

func TestUnknownConnection(t *testing.T) {
	host, p := newPeer(t, 2)
	startMux(t, host, p, nil)
	p.send(usbmux.TCPHeader{SrcPort: 5, DstPort: 99, Seq: 1234, Ack: 1, Flags: usbmux.FlagACK, Window: 512}, []byte("?"))
	p.expectTCP("99->5 RST seq=0 ack=1234 win=0")
	p.send(usbmux.TCPHeader{SrcPort: 5, DstPort: 99, Seq: 1, Flags: usbmux.FlagRST}, nil)
	p.quiet(30 * time.Millisecond)
}

// TestSequenceWrap: a device whose ISN sits just below 2^32 sends data across the wrap.
func TestSequenceWrap(t *testing.T) {
	host, p := newPeer(t, 2)
	m := startMux(t, host, p, nil)
	sa := synack()
	sa.Seq = 0xFFFFFF00
	c := dial(t, m, p, sa)
	msg := fill(1024)
	p.send(data(0xFFFFFF01, 1, 512), msg[:512]) // crosses 2^32
	p.send(data(0x101, 1, 512), msg[512:])
	got := make([]byte, len(msg))
	_, err := io.ReadFull(c, got)
	require.NoError(t, err)
	assert.Equal(t, msg, got)
	// A duplicate of old data is dropped; a gap resets.
	p.send(data(0x101, 1, 512), msg[512:])
	p.send(data(0x1000, 1, 512), []byte("gap"))
	_, err = c.Read(got)
	assert.ErrorIs(t, err, usbmux.ErrSequence)
}

// TestUnplugMidTransfer: pulling the link ends blocked Reads and Writes at once and Wait reports
// the cause.
func TestUnplugMidTransfer(t *testing.T) {
	r := newRig(t, nil, nil)
	l, err := r.srv.Listen(9)
	require.NoError(t, err)
	h, d := r.connPair(t, l, 9)
	defer d.Close()
	require.NoError(t, h.SetDeadline(time.Now().Add(5*time.Second)))
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() { // writer fills the window and blocks
		for {
			if _, err := h.Write(fill(65536)); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Go(func() {
		_, err := h.Read(make([]byte, 10))
		errs <- err
	})
	time.Sleep(20 * time.Millisecond) // let both block; the deadline bounds the test
	start := time.Now()
	r.faults.Drop()
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.ErrorIs(t, err, usbmux.ErrLinkClosed)
		var ne net.Error
		assert.False(t, errors.As(err, &ne) && ne.Timeout(), "ended by the deadline, not the unplug")
	}
	assert.Less(t, time.Since(start), time.Second)
	assert.ErrorIs(t, r.mux.Wait(), usbmux.ErrLinkClosed)
	_, err = r.mux.Dial(context.Background(), 9)
	assert.ErrorIs(t, err, usbmux.ErrLinkClosed)
}

func TestMuxClose(t *testing.T) {
	r := newRig(t, nil, nil)
	l, err := r.srv.Listen(9)
	require.NoError(t, err)
	h, d := r.connPair(t, l, 9)
	defer d.Close()
	require.NoError(t, r.mux.Close())
	_, err = h.Read(make([]byte, 1))
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.ErrorIs(t, r.mux.Wait(), usbmux.ErrClosed)
	select {
	case <-r.mux.Done():
	default:
		t.Fatal("Done not closed")
	}
	_, err = d.Read(make([]byte, 1)) // the device sees the link go away
	assert.ErrorIs(t, err, usbmux.ErrLinkClosed)
}

// TestLinkFaults: corruption of a length field kills the mux with a clear error; a duplicated
// packet is harmless; a reordered data packet resets its connection.
func TestLinkFaults(t *testing.T) {
	t.Run("corrupt length", func(t *testing.T) {
		r := newRig(t, nil, nil)
		r.faults.CorruptAfter(4) // first byte of the next packet's length field
		l, err := r.srv.Listen(9)
		require.NoError(t, err)
		defer l.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, _ = r.mux.Dial(ctx, 9)
		err = r.mux.Wait()
		assert.ErrorIs(t, err, usbmux.ErrLinkClosed)
		assert.True(t, errors.Is(err, usbmux.ErrTooLarge) || errors.Is(err, usbmux.ErrMalformed), "%v", err)
	})
	t.Run("duplicate", func(t *testing.T) {
		r := newRig(t, nil, nil)
		l, err := r.srv.Listen(9)
		require.NoError(t, err)
		defer l.Close()
		h, d := r.connPair(t, l, 9)
		defer h.Close()
		defer d.Close()
		r.faults.DuplicateNext()
		_, err = d.Write([]byte("once"))
		require.NoError(t, err)
		_, err = d.Write([]byte("twice"))
		require.NoError(t, err)
		got := make([]byte, 9)
		_, err = io.ReadFull(h, got)
		require.NoError(t, err)
		assert.Equal(t, "oncetwice", string(got))
	})
	t.Run("reorder", func(t *testing.T) {
		r := newRig(t, nil, nil)
		l, err := r.srv.Listen(9)
		require.NoError(t, err)
		defer l.Close()
		h, d := r.connPair(t, l, 9)
		defer d.Close()
		r.faults.ReorderNext()
		_, _ = d.Write([]byte("first"))
		_, _ = d.Write([]byte("second"))
		_, err = io.ReadAll(h)
		assert.ErrorIs(t, err, usbmux.ErrSequence)
	})
}

// TestDeviceResetConn exercises devmux's fault knob through the host.
func TestDeviceResetConn(t *testing.T) {
	r := newRig(t, nil, nil)
	l, err := r.srv.Listen(9)
	require.NoError(t, err)
	defer l.Close()
	h, d := r.connPair(t, l, 9)
	defer h.Close()
	defer d.Close()
	assert.Equal(t, 1, r.srv.ResetConn(9, "service crashed"))
	_, err = h.Read(make([]byte, 1))
	var re *usbmux.ResetError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "service crashed", re.Reason)
}

// TestStall: while the link delivers nothing, deadlines still end Reads with a timeout, and
// traffic resumes after Unstall.
func TestStall(t *testing.T) {
	r := newRig(t, nil, nil)
	l, err := r.srv.Listen(9)
	require.NoError(t, err)
	defer l.Close()
	h, d := r.connPair(t, l, 9)
	defer h.Close()
	defer d.Close()
	r.faults.Stall()
	_, err = d.Write([]byte("late"))
	require.NoError(t, err)
	require.NoError(t, h.SetReadDeadline(time.Now().Add(30*time.Millisecond)))
	_, err = h.Read(make([]byte, 4))
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	r.faults.Unstall()
	require.NoError(t, h.SetReadDeadline(time.Now().Add(5*time.Second)))
	got := make([]byte, 4)
	_, err = io.ReadFull(h, got)
	require.NoError(t, err)
	assert.Equal(t, "late", string(got))
}

// TestIgnoreDeviceSeq: with the check off, payloads are taken whatever their seq (usbmuxd).
func TestIgnoreDeviceSeq(t *testing.T) {
	host, p := newPeer(t, 2)
	m := startMux(t, host, p, &usbmux.Options{IgnoreDeviceSeq: true})
	c := dial(t, m, p, synack())
	p.send(data(500, 1, 512), []byte("ab"))
	p.send(data(7, 1, 512), []byte("cd"))
	got := make([]byte, 4)
	_, err := io.ReadFull(c, got)
	require.NoError(t, err)
	assert.Equal(t, "abcd", string(got))
}
