package usbmux_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/memlink"
	"github.com/ibackup/ibackup/usbmux"
)

// peer is a scripted device: the test writes raw packets and asserts the host's next packets
// with expectation strings (STYLE.md 13).
type peer struct {
	t      *testing.T
	link   usbmux.Link
	fr     *usbmux.Framer
	faults *memlink.Faults
	pkts   chan rawPacket
}

type rawPacket struct {
	h       usbmux.Header
	payload []byte
}

// newPeer starts a scripted device. Its reader answers the host's VERSION with major (0: no
// answer) and switches to v2 framing itself, so that the SETUP behind it parses correctly.
func newPeer(t *testing.T, major uint32) (host usbmux.Link, p *peer) {
	t.Helper()
	host, dev, f := memlink.New(memlink.Options{})
	p = &peer{t: t, link: dev, fr: usbmux.NewFramer(dev, dev, usbmux.FramerConfig{Device: true}),
		faults: f, pkts: make(chan rawPacket, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(p.pkts)
		for {
			pk, err := p.fr.ReadPacket()
			if err != nil {
				return
			}
			p.pkts <- rawPacket{pk.Header, append([]byte(nil), pk.Payload...)}
			if pk.Header.Protocol == usbmux.ProtoVersion && major != 0 {
				if p.fr.WritePacket(usbmux.ProtoVersion, usbmux.VersionPayload{Major: major}.Append(nil)) != nil {
					return
				}
				if major == 2 {
					p.fr.SetVersion(2)
					p.fr.ResetSeq()
				}
			}
		}
	}()
	t.Cleanup(func() {
		_ = dev.Close()
		_ = host.Close()
		<-done
	})
	return host, p
}

// next returns the host's next packet or fails after 5 s.
func (p *peer) next() rawPacket {
	p.t.Helper()
	select {
	case pk, ok := <-p.pkts:
		require.True(p.t, ok, "link closed while waiting for a packet")
		return pk
	case <-time.After(5 * time.Second):
		require.FailNow(p.t, "timed out waiting for a host packet")
	}
	return rawPacket{}
}

// expectTCP asserts the next packet is TCP with header string want and returns its payload.
func (p *peer) expectTCP(want string) []byte {
	p.t.Helper()
	pk := p.next()
	require.Equal(p.t, usbmux.ProtoTCP, pk.h.Protocol)
	h, payload, err := usbmux.ParseTCP(pk.payload)
	require.NoError(p.t, err)
	assert.Equal(p.t, want, h.String())
	return payload
}

// quiet asserts that the host sends nothing for d.
func (p *peer) quiet(d time.Duration) {
	p.t.Helper()
	select {
	case pk := <-p.pkts:
		h, _, _ := usbmux.ParseTCP(pk.payload)
		assert.Fail(p.t, "unexpected packet", "%s %s", pk.h.Protocol, h)
	case <-time.After(d):
	}
}

func (p *peer) send(h usbmux.TCPHeader, payload []byte) {
	p.t.Helper()
	require.NoError(p.t, p.fr.WriteTCP(h, payload))
}

// handshake consumes the host's VERSION and, for v2, SETUP.
func (p *peer) handshake(major uint32) {
	p.t.Helper()
	pk := p.next()
	require.Equal(p.t, usbmux.ProtoVersion, pk.h.Protocol)
	v, err := usbmux.ParseVersion(pk.payload)
	require.NoError(p.t, err)
	assert.Equal(p.t, usbmux.VersionPayload{Major: 2}, v)
	if major == 2 {
		pk = p.next()
		assert.Equal(p.t, usbmux.ProtoSetup, pk.h.Protocol)
		assert.Equal(p.t, []byte{usbmux.SetupByte}, pk.payload)
	}
}

// startMux runs NewMux against the peer's handshake.
func startMux(t *testing.T, host usbmux.Link, p *peer, opts *usbmux.Options) *usbmux.Mux {
	t.Helper()
	type res struct {
		m   *usbmux.Mux
		err error
	}
	ch := make(chan res, 1)
	go func() {
		m, err := usbmux.NewMux(context.Background(), host, opts)
		ch <- res{m, err}
	}()
	p.handshake(2)
	r := <-ch
	require.NoError(t, r.err)
	t.Cleanup(func() { _ = r.m.Close() })
	return r.m
}

// dial opens host port 1 → device port 7777 with the given SYN-ACK.
func dial(t *testing.T, m *usbmux.Mux, p *peer, synack usbmux.TCPHeader) *usbmux.Conn {
	t.Helper()
	ch := make(chan any, 1)
	go func() {
		c, err := m.Dial(context.Background(), 7777)
		if err != nil {
			ch <- err
			return
		}
		ch <- c
	}()
	p.expectTCP("1->7777 SYN seq=0 ack=0 win=512")
	p.send(synack, nil)
	r := <-ch
	c, ok := r.(*usbmux.Conn)
	require.True(t, ok, "dial: %v", r)
	p.expectTCP("1->7777 ACK seq=1 ack=1 win=512")
	return c
}

func synack() usbmux.TCPHeader {
	return usbmux.TCPHeader{SrcPort: 7777, DstPort: 1, Seq: 0, Ack: 1, Flags: usbmux.FlagSYN | usbmux.FlagACK, Window: 512}
}

func data(seq, ack uint32, win uint16) usbmux.TCPHeader {
	return usbmux.TCPHeader{SrcPort: 7777, DstPort: 1, Seq: usbmux.Seq(seq), Ack: usbmux.Seq(ack),
		Flags: usbmux.FlagACK, Window: win}
}

func fill(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

// dataAmongTwo reads two TCP packets, one bare ACK and one with data, and returns the data
// packet as "header +len".
func (p *peer) dataAmongTwo() []string {
	p.t.Helper()
	var out []string
	bare := 0
	for range 2 {
		pk := p.next()
		h, payload, err := usbmux.ParseTCP(pk.payload)
		require.NoError(p.t, err)
		if len(payload) == 0 {
			bare++
			continue
		}
		out = append(out, fmt.Sprintf("%s +%d", h, len(payload)))
	}
	assert.Equal(p.t, 1, bare, "one bare ACK")
	return out
}
