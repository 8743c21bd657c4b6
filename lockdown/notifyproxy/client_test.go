package notifyproxy

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ibackup/ibackup/fakedevice/fakenet"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tcpPair returns both ends of a buffered loopback connection.
func tcpPair(t *testing.T) (client, server net.Conn) { return fakenet.Pipe(t) }

// devicePeer reads host messages with the codec under test.
type devicePeer struct {
	t  *testing.T
	pc *plistconn.Conn
}

func (d devicePeer) expect(want Message) {
	d.t.Helper()
	b, err := d.pc.ReadRaw()
	require.NoError(d.t, err)
	require.Contains(d.t, string(b), "<?xml", "hosts send XML (§5.2)")
	m, err := DecodeMessage(b)
	require.NoError(d.t, err)
	assert.Equal(d.t, want, m)
}

func (d devicePeer) send(m Message) {
	d.t.Helper()
	b, err := m.Encode(plistconn.Binary)
	require.NoError(d.t, err)
	require.NoError(d.t, d.pc.WriteRaw(b))
}

func TestObservePostRelayShutdown(t *testing.T) {
	cc, sc := tcpPair(t)
	dev := devicePeer{t, plistconn.New(sc, plistconn.XML)}
	c := NewClient(cc, nil)
	ctx := context.Background()

	require.NoError(t, c.Observe(ctx, SyncCancelRequest, PasscodePromptPresented))
	dev.expect(Message{Command: CommandObserve, Name: SyncCancelRequest})
	dev.expect(Message{Command: CommandObserve, Name: PasscodePromptPresented})
	require.NoError(t, c.Post(ctx, SyncWillStart))
	dev.expect(Message{Command: CommandPost, Name: SyncWillStart})

	dev.send(Message{Command: "SomethingNew"}) // skipped
	dev.send(Message{Command: CommandRelay, Name: PasscodePromptPresented})
	dev.send(Message{Command: CommandRelay, Name: SyncCancelRequest})
	assert.Equal(t, PasscodePromptPresented, <-c.Notifications())
	assert.Equal(t, SyncCancelRequest, <-c.Notifications())
	assert.NoError(t, c.Err(), "still running")

	go func() {
		dev.expect(Message{Command: CommandShutdown})
		dev.send(Message{Command: CommandProxyDeath})
	}()
	require.NoError(t, c.Shutdown(ctx))
	_, open := <-c.Notifications()
	assert.False(t, open)
	assert.ErrorIs(t, c.Err(), ErrProxyDeath)
	assert.NoError(t, c.Close(), "Close after Shutdown is a no-op")
}

func TestBackpressureNeverBlocksClose(t *testing.T) {
	cc, sc := tcpPair(t)
	dev := devicePeer{t, plistconn.New(sc, plistconn.XML)}
	c := NewClient(cc, &Options{Buffer: 1})
	for range 5 {
		dev.send(Message{Command: CommandRelay, Name: SyncSuspendRequest})
	}
	// Nobody reads: the buffer fills and the reader waits; Close still
	// returns promptly and the channel is closed.
	require.Eventually(t, func() bool { return len(c.Notifications()) == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, c.Close())
	for range c.Notifications() {
	}
	assert.ErrorIs(t, c.Err(), ErrClosed)
}

func TestShutdownWithoutConsumerOrProxyDeath(t *testing.T) {
	cc, sc := tcpPair(t)
	dev := devicePeer{t, plistconn.New(sc, plistconn.XML)}
	c := NewClient(cc, &Options{Buffer: 1})
	dev.send(Message{Command: CommandRelay, Name: SyncSuspendRequest})
	dev.send(Message{Command: CommandRelay, Name: SyncResumeRequest})
	go func() {
		dev.expect(Message{Command: CommandShutdown})
		_ = sc.Close() // the device may simply close (§6 item 10)
	}()
	require.NoError(t, c.Shutdown(context.Background()))
	assert.ErrorIs(t, c.Err(), io.EOF)
}

func TestShutdownTimesOut(t *testing.T) {
	cc, sc := tcpPair(t)
	dev := devicePeer{t, plistconn.New(sc, plistconn.XML)}
	c := NewClient(cc, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	go dev.expect(Message{Command: CommandShutdown}) // and never answers
	err := c.Shutdown(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	<-c.Done()
}

func TestUnexpectedEndsAreReported(t *testing.T) {
	t.Run("proxy death", func(t *testing.T) {
		cc, sc := tcpPair(t)
		dev := devicePeer{t, plistconn.New(sc, plistconn.XML)}
		c := NewClient(cc, nil)
		defer c.Close()
		dev.send(Message{Command: CommandProxyDeath})
		<-c.Done()
		assert.ErrorIs(t, c.Err(), ErrProxyDeath)
	})
	t.Run("malformed", func(t *testing.T) {
		cc, sc := tcpPair(t)
		pc := plistconn.New(sc, plistconn.XML)
		c := NewClient(cc, nil)
		defer c.Close()
		require.NoError(t, pc.WriteMessage(map[string]any{"Command": "RelayNotification"}))
		<-c.Done()
		assert.ErrorIs(t, c.Err(), ErrMalformed)
	})
	t.Run("eof", func(t *testing.T) {
		cc, sc := tcpPair(t)
		c := NewClient(cc, nil)
		defer c.Close()
		require.NoError(t, sc.Close())
		<-c.Done()
		assert.ErrorIs(t, c.Err(), io.EOF)
	})
	t.Run("write after close", func(t *testing.T) {
		cc, _ := tcpPair(t)
		c := NewClient(cc, nil)
		require.NoError(t, c.Close())
		assert.Error(t, c.Post(context.Background(), SyncDidFinish))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		assert.ErrorIs(t, c.Post(ctx, SyncDidFinish), context.Canceled)
	})
}
