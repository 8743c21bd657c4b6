package devmux

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/memlink"
	"github.com/ibackup/ibackup/usbmux"
)

// TestDeviceSpeaksFirst checks that data a device writes the moment it accepts a
// connection never overtakes its SYN-ACK: the host would take the data packet as the
// answer to its SYN and call the port refused.
func TestDeviceSpeaksFirst(t *testing.T) {
	hl, dl, _ := memlink.New(memlink.Options{})
	srv := New(dl, nil)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background()) }()
	ln, err := srv.Listen(7777)
	require.NoError(t, err)
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello"))
			_ = c.Close()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := usbmux.NewMux(ctx, hl, nil)
	require.NoError(t, err)
	for i := range 100 {
		c, err := m.Dial(ctx, 7777)
		require.NoError(t, err, "dial %d", i)
		buf := make([]byte, 5)
		_, err = io.ReadFull(c, buf)
		assert.NoError(t, err, "dial %d", i)
		assert.Equal(t, "hello", string(buf))
		_ = c.Close()
	}
	require.NoError(t, m.Close())
	_ = srv.Close()
	<-served
	_ = ln.Close()
	<-accepted
}
