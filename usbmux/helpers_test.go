package usbmux_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/devmux"
	"github.com/ibackup/ibackup/fakedevice/memlink"
	"github.com/ibackup/ibackup/usbmux"
)

// rig is a host Mux connected through a memlink to a devmux Server.
type rig struct {
	mux    *usbmux.Mux
	srv    *devmux.Server
	faults *memlink.Faults
	served chan error
}

func newRig(t testing.TB, mopts *usbmux.Options, dopts *devmux.Options) *rig {
	t.Helper()
	host, dev, f := memlink.New(memlink.Options{})
	srv := devmux.New(dev, dopts)
	r := &rig{srv: srv, faults: f, served: make(chan error, 1)}
	go func() { r.served <- srv.Serve(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := usbmux.NewMux(ctx, host, mopts)
	if err != nil {
		_ = srv.Close()
		<-r.served
		require.NoError(t, err)
	}
	r.mux = m
	t.Cleanup(r.close)
	return r
}

// close shuts both sides down and waits for their goroutines.
func (r *rig) close() {
	_ = r.mux.Close()
	_ = r.srv.Close()
	<-r.srv.Done()
}

// connPair dials port through the mux and accepts it on the device side.
func (r *rig) connPair(t testing.TB, l net.Listener, port uint16) (host, dev net.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	host, err := r.mux.Dial(ctx, port)
	require.NoError(t, err)
	dev, ok := <-accepted
	require.True(t, ok, "accept failed")
	return host, dev
}

func memlinkPair() (host, dev usbmux.Link, f *memlink.Faults) {
	return memlink.New(memlink.Options{})
}
