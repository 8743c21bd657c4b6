package usbmuxd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/lockdown/pairrecord"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// Byte-level tests of the Server: what a libusbmuxd-like client sees.

func sendPlist(t *testing.T, fr *Framer, tag uint32, m map[string]any) {
	t.Helper()
	b, err := plistconn.Marshal(m, plistconn.XML)
	require.NoError(t, err)
	require.NoError(t, fr.WriteFrame(&Frame{Version: ProtoPlist, Type: TypePlist, Tag: tag, Payload: b}))
}

func readPlist(t *testing.T, fr *Framer, wantTag uint32) map[string]any {
	t.Helper()
	f, err := fr.ReadFrame()
	require.NoError(t, err)
	require.Equal(t, TypePlist, f.Type)
	assert.Equal(t, ProtoPlist, f.Version)
	assert.Equal(t, wantTag, f.Tag)
	require.Contains(t, string(f.Payload), "<?xml", "replies are XML (§1.2)")
	var m map[string]any
	require.NoError(t, plistconn.Unmarshal(f.Payload, &m))
	return m
}

func readBinary(t *testing.T, fr *Framer) *Frame {
	t.Helper()
	f, err := fr.ReadFrame()
	require.NoError(t, err)
	assert.Equal(t, ProtoBinary, f.Version)
	return f
}

func result(n uint64) map[string]any {
	return map[string]any{"MessageType": "Result", "Number": n}
}

// expectClosed reads until EOF, allowing at most one Result first.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := io.ReadAll(c)
	assert.NoError(t, err, "the server closes the socket")
}

func TestServerListDevicesReply(t *testing.T) {
	set := NewDeviceSet()
	devs := addEcho(t, set, 2)
	ts := startServer(t, set, nil)
	_, fr := ts.rawConn(t)
	sendPlist(t, fr, 1, map[string]any{"MessageType": "ListDevices", "ProgName": "idevice_id", "kLibUSBMuxVersion": 3})
	m := readPlist(t, fr, 1)
	assert.NotContains(t, m, "MessageType", "libusbmuxd rejects a MessageType here (§1.4)")
	list := m["DeviceList"].([]any)
	require.Len(t, list, 2)
	e := list[1].(map[string]any)
	assert.Equal(t, "Attached", e["MessageType"])
	assert.Equal(t, uint64(devs[1].ID), e["DeviceID"])
	assert.Equal(t, map[string]any{
		"ConnectionSpeed": uint64(480000000), "ConnectionType": "USB", "DeviceID": uint64(devs[1].ID),
		"LocationID": uint64(0x10001), "ProductID": uint64(0x12A8), "SerialNumber": testUDID(1),
	}, e["Properties"])
}

func TestServerPlistConnect(t *testing.T) {
	set := NewDeviceSet()
	devs := addEcho(t, set, 1)
	ts := startServer(t, set, nil)
	c, fr := ts.rawConn(t)

	// Unknown device → 2, refused port → 3, missing keys → 2 / 1; the
	// socket stays in command state after each (M-b4).
	sendPlist(t, fr, 1, map[string]any{"MessageType": "Connect", "DeviceID": 99, "PortNumber": int(SwapPort(lockdownPort))})
	assert.Equal(t, result(2), readPlist(t, fr, 1))
	sendPlist(t, fr, 2, map[string]any{"MessageType": "Connect", "DeviceID": int(devs[0].ID), "PortNumber": int(SwapPort(22))})
	assert.Equal(t, result(3), readPlist(t, fr, 2))
	sendPlist(t, fr, 3, map[string]any{"MessageType": "Connect", "PortNumber": 1})
	assert.Equal(t, result(2), readPlist(t, fr, 3))
	sendPlist(t, fr, 4, map[string]any{"MessageType": "Connect", "DeviceID": int(devs[0].ID)})
	assert.Equal(t, result(1), readPlist(t, fr, 4))

	// PortNumber 32498 is lockdown's 62078 (§1.6).
	sendPlist(t, fr, 5, map[string]any{"MessageType": "Connect", "DeviceID": int(devs[0].ID), "PortNumber": 32498})
	assert.Equal(t, result(0), readPlist(t, fr, 5))
	_, err := c.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf), "the socket is now the raw device stream")
}

func TestServerBinaryProtocol(t *testing.T) {
	set := NewDeviceSet()
	devs := addEcho(t, set, 1)
	ts := startServer(t, set, nil)

	_, lfr := ts.rawConn(t)
	require.NoError(t, lfr.WriteFrame(&Frame{Version: ProtoBinary, Type: TypeListen, Tag: 4}))
	f := readBinary(t, lfr)
	assert.Equal(t, TypeResult, f.Type)
	assert.Equal(t, uint32(4), f.Tag)
	assert.Equal(t, AppendResult(nil, ResultOK), f.Payload)
	f = readBinary(t, lfr)
	require.Equal(t, TypeDeviceAdd, f.Type)
	assert.Equal(t, uint32(0), f.Tag, "notifications carry tag 0")
	rec, err := ParseDeviceRecord(f.Payload)
	require.NoError(t, err)
	assert.Equal(t, DeviceRecord{DeviceID: devs[0].ID, ProductID: 0x12A8, SerialNumber: testUDID(0), Location: 0x10000}, rec)

	set.Remove(testUDID(0))
	f = readBinary(t, lfr)
	assert.Equal(t, TypeDeviceRemove, f.Type)
	assert.Equal(t, AppendDeviceID(nil, devs[0].ID), f.Payload)

	d2, err := set.Add(Device{UDID: "x"}, newEchoDevice(t).Dial)
	require.NoError(t, err)
	assert.Equal(t, TypeDeviceAdd, readBinary(t, lfr).Type)

	c, fr := ts.rawConn(t)
	connect := func(tag, id uint32, port uint16) {
		require.NoError(t, fr.WriteFrame(&Frame{Version: ProtoBinary, Type: TypeConnect, Tag: tag,
			Payload: ConnectRequest{DeviceID: id, Port: port}.Append(nil)}))
	}
	connect(1, devs[0].ID, lockdownPort) // detached
	assert.Equal(t, AppendResult(nil, ResultBadDevice), readBinary(t, fr).Payload)
	require.NoError(t, fr.WriteFrame(&Frame{Version: ProtoBinary, Type: TypeConnect, Tag: 2, Payload: []byte{1, 2}}))
	assert.Equal(t, AppendResult(nil, ResultBadCommand), readBinary(t, fr).Payload, "short CONNECT")
	connect(3, d2.ID, lockdownPort)
	f = readBinary(t, fr)
	assert.Equal(t, uint32(3), f.Tag)
	assert.Equal(t, AppendResult(nil, ResultOK), f.Payload)
	_, err = c.Write([]byte("raw"))
	require.NoError(t, err)
	buf := make([]byte, 3)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "raw", string(buf))
}

func TestServerMalformed(t *testing.T) {
	set := NewDeviceSet()
	addEcho(t, set, 1)
	ts := startServer(t, set, nil)

	t.Run("error results keep the socket", func(t *testing.T) {
		_, fr := ts.rawConn(t)
		require.NoError(t, fr.WriteFrame(&Frame{Version: ProtoBinary, Type: 77, Tag: 1}))
		assert.Equal(t, AppendResult(nil, ResultBadCommand), readBinary(t, fr).Payload, "unknown binary type")
		require.NoError(t, fr.WriteFrame(&Frame{Version: 5, Type: TypeListen, Tag: 2}))
		assert.Equal(t, AppendResult(nil, ResultBadVersion), readBinary(t, fr).Payload, "header version 5")
		require.NoError(t, fr.WriteFrame(&Frame{Version: ProtoPlist, Type: TypePlist, Tag: 3, Payload: []byte("<plist><dict><key>")}))
		assert.Equal(t, result(1), readPlist(t, fr, 3), "plist garbage")
		sendPlist(t, fr, 4, map[string]any{"NoMessageType": 1})
		assert.Equal(t, result(1), readPlist(t, fr, 4))
		sendPlist(t, fr, 5, map[string]any{"MessageType": "Reboot"})
		assert.Equal(t, result(1), readPlist(t, fr, 5), "unknown command")
		require.NoError(t, fr.WriteFrame(&Frame{Version: ProtoBinary, Type: TypeResult, Tag: 6}))
		assert.Equal(t, result(1), readPlist(t, fr, 6), "replies follow the client's protocol once it spoke plist")
		sendPlist(t, fr, 7, map[string]any{"MessageType": "ReadBUID"})
		m := readPlist(t, fr, 7)
		assert.NotEmpty(t, m["BUID"], "still usable")
	})
	for name, raw := range map[string][]byte{
		"length below header": {8, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0},
		"huge length":         {0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0},
		"just over 64 KiB":    binary.LittleEndian.AppendUint32(nil, MaxRequestSize+1),
	} {
		t.Run(name, func(t *testing.T) {
			c, _ := ts.rawConn(t)
			if len(raw) == 4 {
				raw = append(raw, 1, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0)
			}
			_, err := c.Write(raw)
			require.NoError(t, err)
			expectClosed(t, c)
		})
	}
	t.Run("truncated then closed", func(t *testing.T) {
		c, _ := ts.rawConn(t)
		_, err := c.Write([]byte{100, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, '<'})
		require.NoError(t, err)
		require.NoError(t, c.(*net.UnixConn).CloseWrite())
		expectClosed(t, c)
	})
	// Whatever happened above, the server still serves others.
	devs, err := ts.client(t, nil).Devices(context.Background())
	require.NoError(t, err)
	assert.Len(t, devs, 1)
}

func TestServerListenSocketTakesNoCommands(t *testing.T) {
	ts := startServer(t, NewDeviceSet(), nil)
	c, fr := ts.rawConn(t)
	sendPlist(t, fr, 1, map[string]any{"MessageType": "Listen"})
	assert.Equal(t, result(0), readPlist(t, fr, 1))
	sendPlist(t, fr, 2, map[string]any{"MessageType": "ListDevices"})
	// A2: a command on a listening socket ends it (we send Result 1 first).
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	f, err := fr.ReadFrame()
	if err == nil {
		var m map[string]any
		require.NoError(t, plistconn.Unmarshal(f.Payload, &m))
		assert.Equal(t, result(1), m)
	}
	expectClosed(t, c)
}

// blockingSource's Dial waits until the test releases it or ctx ends.
type blockingSource struct {
	*DeviceSet
	entered chan struct{}
	release chan struct{}
}

func (b *blockingSource) Dial(ctx context.Context, id uint32, port uint16) (net.Conn, error) {
	b.entered <- struct{}{}
	select {
	case <-b.release:
		return b.DeviceSet.Dial(ctx, id, port)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func TestServerEarlyDataDuringConnect(t *testing.T) {
	set := NewDeviceSet()
	devs := addEcho(t, set, 1)
	src := &blockingSource{DeviceSet: set, entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv := NewServer(src, &Options{Records: ts0(t)})
	defer srv.Close()
	a, b := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(context.Background(), b) }()
	fr := NewFramer(a, a)
	go sendPlist(t, fr, 1, map[string]any{"MessageType": "Connect", "DeviceID": int(devs[0].ID), "PortNumber": 32498})
	<-src.entered
	// A3: bytes before the Result abort the connect and drop the client.
	_, _ = a.Write([]byte("too early")) // net.Pipe: fails once the server hangs up
	err := <-done
	assert.ErrorIs(t, err, errEarlyData)
	a.Close()
}

func TestServerClientGoneDuringConnectCancelsDial(t *testing.T) {
	set := NewDeviceSet()
	devs := addEcho(t, set, 1)
	src := &blockingSource{DeviceSet: set, entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv := NewServer(src, &Options{Records: ts0(t)})
	defer srv.Close()
	a, b := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(context.Background(), b) }()
	go sendPlist(t, NewFramer(a, a), 1, map[string]any{"MessageType": "Connect", "DeviceID": int(devs[0].ID), "PortNumber": 32498})
	<-src.entered
	a.Close() // libusbmuxd gave up
	assert.Error(t, <-done)
}

func TestServerDialTimeout(t *testing.T) {
	set := NewDeviceSet()
	devs := addEcho(t, set, 1)
	src := &blockingSource{DeviceSet: set, entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv := NewServer(src, &Options{Records: ts0(t), DialTimeout: 50 * time.Millisecond})
	defer srv.Close()
	a, b := net.Pipe()
	defer a.Close()
	go func() { _ = srv.ServeConn(context.Background(), b) }()
	fr := NewFramer(a, a)
	go sendPlist(t, fr, 1, map[string]any{"MessageType": "Connect", "DeviceID": int(devs[0].ID), "PortNumber": 32498})
	<-src.entered
	assert.Equal(t, result(3), readPlist(t, fr, 1))
}

func ts0(t *testing.T) (d pairrecord.Dir) {
	t.Helper()
	d.Path = filepath.Join(t.TempDir(), "lockdown")
	return d
}

func TestServerSlowListenerDropped(t *testing.T) {
	set := NewDeviceSet()
	ts := startServer(t, set, &Options{MaxQueuedEvents: 4, WriteTimeout: 200 * time.Millisecond})
	// This listener never reads. Its events pile up in the socket buffer,
	// then in the queue, and it is dropped; others are unaffected.
	slow, sfr := ts.rawConn(t)
	sendPlist(t, sfr, 1, map[string]any{"MessageType": "Listen"})
	good := ts.client(t, nil)
	sub, err := good.Listen(context.Background())
	require.NoError(t, err)
	defer sub.Close()
	for i := range 300 {
		d := Device{UDID: testUDID(i)}
		_, err := set.Add(d, nopDial)
		require.NoError(t, err)
		ev := <-sub.Events()
		require.Equal(t, Attached, ev.Kind)
		set.Remove(d.UDID)
		ev = <-sub.Events()
		require.Equal(t, Detached, ev.Kind)
	}
	require.Eventually(t, func() bool {
		ts.srv.mu.Lock()
		defer ts.srv.mu.Unlock()
		return len(ts.srv.clients) == 1 // only the good listener
	}, 10*time.Second, 10*time.Millisecond)
	_ = slow
}

func TestServerCloseEndsEverything(t *testing.T) {
	set := NewDeviceSet()
	devs := addEcho(t, set, 1)
	dir := shortTempDir(t)
	l, err := Listen(filepath.Join(dir, "s"))
	require.NoError(t, err)
	srv := NewServer(set, &Options{Records: pairrecord.Dir{Path: dir}})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), l) }()
	c, err := NewClient(filepath.Join(dir, "s"), nil)
	require.NoError(t, err)
	sub, err := c.Listen(context.Background())
	require.NoError(t, err)
	conn, err := c.Connect(context.Background(), devs[0].ID, lockdownPort)
	require.NoError(t, err)
	require.NoError(t, srv.Close())
	assert.ErrorIs(t, <-done, ErrServerClosed)
	for range sub.Events() {
	}
	assert.Error(t, sub.Err())
	_, err = conn.Read(make([]byte, 1))
	assert.Error(t, err, "raw streams are closed too")
	conn.Close()
	sub.Close()
	_, err = os.Stat(filepath.Join(dir, "s"))
	assert.True(t, errors.Is(err, os.ErrNotExist), "socket file removed")
	assert.ErrorIs(t, srv.ServeConn(context.Background(), nopConn{}), ErrServerClosed)
}

type nopConn struct{ net.Conn }

func (nopConn) Close() error { return nil }

// TestServerManyClientsAndDevices runs clients against many devices at
// once, mixing listeners, listings and raw streams.
func TestServerManyClientsAndDevices(t *testing.T) {
	nDev, nClient := 16, 32
	if testing.Short() {
		nDev, nClient = 4, 8
	}
	set := NewDeviceSet()
	devs := addEcho(t, set, nDev)
	ts := startServer(t, set, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, nClient)
	for i := range nClient {
		wg.Add(1)
		go func() {
			defer wg.Done()
			proto := ProtoPlist
			if i%2 == 1 {
				proto = ProtoBinary
			}
			// Binary listings end after a quiet period; give a loaded
			// machine time (libusbmuxd's 100 ms is tested elsewhere).
			c, err := NewClient(ts.addr, &ClientOptions{Protocol: proto, ListQuiet: time.Second})
			if err != nil {
				errs <- err
				return
			}
			got, err := c.Devices(ctx)
			if err != nil || len(got) != nDev {
				errs <- errors.Join(err, fmt.Errorf("device list incomplete: %d (%v)", len(got), proto))
				return
			}
			d := devs[i%nDev]
			conn, err := c.Connect(ctx, d.ID, lockdownPort)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			msg := make([]byte, 64<<10)
			for j := range msg {
				msg[j] = byte(i + j)
			}
			go func() { _, _ = conn.Write(msg) }()
			back := make([]byte, len(msg))
			if _, err := io.ReadFull(conn, back); err != nil {
				errs <- err
				return
			}
			if string(back) != string(msg) {
				errs <- errors.New("echo mismatch")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
}
