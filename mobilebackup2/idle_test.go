package mobilebackup2

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/fakenet"
)

// silentPair returns a client connection whose peer never sends.
func silentPair(t *testing.T) net.Conn {
	c, _ := fakenet.Pipe(t)
	return c
}

func TestIdleTimeoutEndsSilentRead(t *testing.T) {
	c := NewClient(silentPair(t))
	c.SetIdleTimeout(50 * time.Millisecond)
	stop := c.watchIdle(nil)
	defer stop()
	start := time.Now()
	_, err := c.dl.Read()
	require.Error(t, err)
	assert.Less(t, time.Since(start), 10*time.Second)
	s := c.stalled(err)
	require.Error(t, s)
	assert.ErrorIs(t, s, ErrStalled)
	assert.Contains(t, Hint(s), "unplug and replug")
}

func TestNoIdleTimeoutByDefault(t *testing.T) {
	c := NewClient(silentPair(t))
	// An outside deadline (as context cancellation sets) still works and is
	// not taken for a stall.
	require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	_, err := c.dl.Read()
	require.Error(t, err)
	assert.NoError(t, c.stalled(err))
}
