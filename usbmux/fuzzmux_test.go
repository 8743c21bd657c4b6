package usbmux_test

import (
	"io"
	"testing"

	"github.com/ibackup/ibackup/usbmux"
)

// FuzzMuxInput sends arbitrary bytes from the device to a host Mux that has one connection
// open: whatever arrives must end in data, an error or nothing, never a panic or a hang, and the
// mux must still close cleanly.
func FuzzMuxInput(f *testing.F) {
	v2 := func(proto usbmux.Protocol, body []byte) []byte {
		h := usbmux.Header{Protocol: proto, Length: uint32(16 + len(body)), Magic: usbmux.Magic}
		return append(usbmux.AppendHeader(nil, h, 2), body...)
	}
	seg := func(h usbmux.TCPHeader, payload string) []byte {
		return v2(usbmux.ProtoTCP, append(h.Append(nil), payload...))
	}
	f.Add(seg(data(1, 1, 512), "hello"))
	f.Add(append(seg(data(1, 1, 0), "x"), seg(usbmux.TCPHeader{SrcPort: 7777, DstPort: 1, Flags: usbmux.FlagRST}, "bye\n")...))
	f.Add(v2(usbmux.ProtoControl, []byte("\x03oops")))
	f.Add(v2(99, []byte("unknown protocol")))
	f.Add(usbmux.AppendHeader(nil, usbmux.Header{Protocol: usbmux.ProtoTCP, Length: 1 << 30}, 2))
	f.Add(seg(data(0xFFFFFFF0, 0xFFFFFFFF, 0xFFFF), "wrap"))
	f.Fuzz(func(t *testing.T, in []byte) {
		host, p := newPeer(t, 2)
		m := startMux(t, host, p, nil)
		c := dial(t, m, p, synack())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = io.Copy(io.Discard, c)
		}()
		_, _ = p.link.Write(in)
		_ = m.Close()
		<-done
	})
}
