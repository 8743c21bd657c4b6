package fakenet

import (
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBothWriteFirst(t *testing.T) {
	a, b := Pipe(t)
	_, err := a.Write([]byte("ping"))
	require.NoError(t, err)
	_, err = b.Write([]byte("pong"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(a, buf)
	require.NoError(t, err)
	assert.Equal(t, "pong", string(buf))
	_, err = io.ReadFull(b, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))
}
