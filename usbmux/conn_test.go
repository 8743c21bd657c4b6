package usbmux_test

import (
	"net"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/net/nettest"

	"github.com/ibackup/ibackup/usbmux"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestNetConn runs the x/net conformance suite on a host conn (c1) and its device end (c2), and
// the other way round.
func TestNetConn(t *testing.T) {
	for _, hostFirst := range []bool{true, false} {
		name := "HostConn"
		if !hostFirst {
			name = "DeviceConn"
		}
		t.Run(name, func(t *testing.T) {
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				r := newRig(t, nil, nil)
				l, err := r.srv.Listen(7777)
				if err != nil {
					return nil, nil, nil, err
				}
				h, d := r.connPair(t, l, 7777)
				stop = func() {
					_ = h.Close()
					_ = d.Close()
					_ = l.Close()
					r.close()
				}
				if hostFirst {
					return h, d, stop, nil
				}
				return d, h, stop, nil
			})
		})
	}
}

var _ net.Conn = (*usbmux.Conn)(nil)
