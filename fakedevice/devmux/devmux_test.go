package devmux

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ibackup/ibackup/fakedevice/memlink"
	"github.com/ibackup/ibackup/usbmux"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// host is a scripted usbmux host talking raw packets to a Server.
type host struct {
	t    *testing.T
	link usbmux.Link
	fr   *usbmux.Framer
	pkts chan usbmux.Packet
	srv  *Server
}

func newHost(t *testing.T, opts *Options) *host {
	t.Helper()
	hl, dl, _ := memlink.New(memlink.Options{})
	h := &host{t: t, link: hl, fr: usbmux.NewFramer(hl, hl, usbmux.FramerConfig{}),
		pkts: make(chan usbmux.Packet, 256), srv: New(dl, opts)}
	served := make(chan error, 1)
	go func() { served <- h.srv.Serve(context.Background()) }()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			p, err := h.fr.ReadPacket()
			if err != nil {
				close(h.pkts)
				return
			}
			p.Payload = append([]byte(nil), p.Payload...)
			if p.Header.Protocol == usbmux.ProtoVersion {
				v, _ := usbmux.ParseVersion(p.Payload)
				if v.Major == 2 {
					// before reading anything else (corrections.md M-a 3), and before the
					// test, woken by the channel, writes SETUP
					h.fr.SetVersion(2)
				}
			}
			h.pkts <- p
		}
	}()
	t.Cleanup(func() {
		_ = h.srv.Close()
		<-served
		_ = hl.Close()
		<-readerDone
	})
	return h
}

func (h *host) next() usbmux.Packet {
	h.t.Helper()
	select {
	case p, ok := <-h.pkts:
		require.True(h.t, ok, "link closed")
		return p
	case <-time.After(5 * time.Second):
		require.FailNow(h.t, "timeout waiting for a device packet")
	}
	return usbmux.Packet{}
}

func (h *host) expectTCP(want string) []byte {
	h.t.Helper()
	p := h.next()
	require.Equal(h.t, usbmux.ProtoTCP, p.Header.Protocol)
	th, payload, err := usbmux.ParseTCP(p.Payload)
	require.NoError(h.t, err)
	assert.Equal(h.t, want, th.String())
	return payload
}

func (h *host) quiet(d time.Duration) {
	h.t.Helper()
	select {
	case p := <-h.pkts:
		th, _, _ := usbmux.ParseTCP(p.Payload)
		assert.Fail(h.t, "unexpected packet", "%s %s", p.Header.Protocol, th)
	case <-time.After(d):
	}
}

// handshake sends VERSION and SETUP and returns the device's VERSION reply.
func (h *host) handshake() usbmux.VersionPayload {
	h.t.Helper()
	require.NoError(h.t, h.fr.WritePacket(usbmux.ProtoVersion, usbmux.VersionPayload{Major: 2}.Append(nil)))
	p := h.next()
	require.Equal(h.t, usbmux.ProtoVersion, p.Header.Protocol)
	v, err := usbmux.ParseVersion(p.Payload)
	require.NoError(h.t, err)
	if v.Major == 2 {
		h.fr.ResetSeq()
		require.NoError(h.t, h.fr.WritePacket(usbmux.ProtoSetup, []byte{usbmux.SetupByte}))
	}
	return v
}

func (h *host) send(th usbmux.TCPHeader, payload []byte) {
	h.t.Helper()
	require.NoError(h.t, h.fr.WriteTCP(th, payload))
}

func tcp(seq, ack uint32, flags usbmux.TCPFlags) usbmux.TCPHeader {
	return usbmux.TCPHeader{SrcPort: 1, DstPort: 7777, Seq: usbmux.Seq(seq), Ack: usbmux.Seq(ack), Flags: flags, Window: 512}
}

// TestDeviceRules walks one connection through the device's side of corrections.md M-a.
func TestDeviceRules(t *testing.T) {
	h := newHost(t, &Options{DelayedAck: 10 * time.Millisecond})
	assert.Equal(t, uint32(2), h.handshake().Major)
	l, err := h.srv.Listen(7777)
	require.NoError(t, err)
	defer l.Close()

	h.send(usbmux.TCPHeader{SrcPort: 2, DstPort: 8888, Flags: usbmux.FlagSYN, Window: 512}, nil)
	h.expectTCP("8888->2 RST|ACK seq=0 ack=1 win=512") // nobody listens

	h.send(tcp(0, 0, usbmux.FlagSYN), nil)
	h.expectTCP("7777->1 SYN|ACK seq=0 ack=1 win=512") // flags exactly 0x12 (M-a 5)
	h.send(tcp(1, 1, usbmux.FlagACK), nil)
	c, err := l.Accept()
	require.NoError(t, err)
	defer c.Close()
	h.quiet(30 * time.Millisecond) // a pure ACK is never answered (M-a 7)

	h.send(tcp(1, 1, usbmux.FlagACK), []byte("ping"))
	h.quiet(30 * time.Millisecond) // data is acked only when consumed
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	h.expectTCP("7777->1 ACK seq=1 ack=5 win=512")

	_, err = c.Write([]byte("pong"))
	require.NoError(t, err)
	assert.Equal(t, "pong", string(h.expectTCP("7777->1 ACK seq=1 ack=5 win=512")))

	// The host's RST ends the connection: Read sees EOF.
	h.send(tcp(5, 5, usbmux.FlagRST), nil)
	_, err = c.Read(buf)
	assert.ErrorIs(t, err, io.EOF)
	h.quiet(20 * time.Millisecond)

	// A stray ACK for an unknown connection gets the anonymous RST.
	h.send(tcp(42, 1, usbmux.FlagACK), []byte("x"))
	h.expectTCP("7777->1 RST seq=0 ack=42 win=0")
}

func TestDeviceHeaders(t *testing.T) {
	h := newHost(t, &Options{Magic: 0xFACEFACE})
	// The VERSION reply is in v1 framing: exactly the 20 bytes of §2.2.
	require.NoError(t, h.fr.WritePacket(usbmux.ProtoVersion, usbmux.VersionPayload{Major: 2}.Append(nil)))
	p := h.next()
	raw := usbmux.AppendHeader(nil, p.Header, 1)
	assert.Equal(t, "0000000000000014", hex.EncodeToString(raw))
	h.fr.ResetSeq()
	require.NoError(t, h.fr.WritePacket(usbmux.ProtoSetup, []byte{usbmux.SetupByte}))         // host tx 0
	h.send(usbmux.TCPHeader{SrcPort: 2, DstPort: 9, Flags: usbmux.FlagSYN, Window: 512}, nil) // host tx 1
	p = h.next()
	assert.Equal(t, uint32(0xFACEFACE), p.Header.Magic)
	assert.Equal(t, uint16(0), p.Header.TxSeq)
	assert.Equal(t, uint16(1), p.Header.RxSeq, "rx_seq echoes the host's last tx_seq")
}

func TestVersionOptions(t *testing.T) {
	h := newHost(t, &Options{VersionMajor: 1})
	assert.Equal(t, uint32(1), h.handshake().Major)
	h.send(usbmux.TCPHeader{SrcPort: 2, DstPort: 9, Flags: usbmux.FlagSYN, Window: 512}, nil)
	p := h.next()
	assert.Equal(t, usbmux.ProtoTCP, p.Header.Protocol, "v1 framing kept")
	assert.Equal(t, uint32(8+20), p.Header.Length)

	h = newHost(t, &Options{NoVersionReply: true,
		Control: []usbmux.ControlMessage{{Type: usbmux.ControlTypeWarning, Text: "hi"}}})
	require.NoError(t, h.fr.WritePacket(usbmux.ProtoVersion, usbmux.VersionPayload{Major: 2}.Append(nil)))
	p = h.next()
	require.Equal(t, usbmux.ProtoControl, p.Header.Protocol)
	m, err := usbmux.ParseControl(p.Payload)
	require.NoError(t, err)
	assert.Equal(t, usbmux.ControlMessage{Type: usbmux.ControlTypeWarning, Text: "hi"}, m)
}

func TestListeners(t *testing.T) {
	h := newHost(t, &Options{Backlog: 1})
	h.handshake()
	l, err := h.srv.Listen(7777)
	require.NoError(t, err)
	_, err = h.srv.Listen(7777)
	assert.Error(t, err)
	assert.Equal(t, "device:7777", l.Addr().String())

	h.send(tcp(0, 0, usbmux.FlagSYN), nil)
	h.expectTCP("7777->1 SYN|ACK seq=0 ack=1 win=512")
	second := tcp(0, 0, usbmux.FlagSYN)
	second.SrcPort = 2
	h.send(second, nil) // backlog of 1 is full: accepted then reset
	h.expectTCP("7777->2 SYN|ACK seq=0 ack=1 win=512")
	assert.Equal(t, "backlog full", string(h.expectTCP("7777->2 RST seq=1 ack=1 win=512")))

	require.NoError(t, l.Close()) // the unclaimed connection is reset
	h.expectTCP("7777->1 RST seq=1 ack=1 win=512")
	_, err = l.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.Error(t, l.Close())
}

func TestServeEnds(t *testing.T) {
	hl, dl, f := memlink.New(memlink.Options{})
	srv := New(dl, nil)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	l, err := srv.Listen(1)
	require.NoError(t, err)
	cancel()
	assert.ErrorIs(t, <-served, context.Canceled)
	_, err = l.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
	_, err = srv.Listen(2)
	assert.ErrorIs(t, err, ErrServerClosed)
	_ = hl.Close()
	assert.NoError(t, f.Leaks())

	hl, dl, f = memlink.New(memlink.Options{})
	srv = New(dl, nil)
	go func() { served <- srv.Serve(context.Background()) }()
	f.Drop()
	assert.ErrorIs(t, <-served, usbmux.ErrLinkClosed)
	_ = hl.Close()
}
