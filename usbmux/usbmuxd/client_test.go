package usbmuxd

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/lockdown/pairrecord"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// Our Client against our Server, over both protocol versions.

func bothProtocols(t *testing.T, f func(t *testing.T, proto ProtoVersion)) {
	for _, p := range []ProtoVersion{ProtoPlist, ProtoBinary} {
		t.Run(p.String(), func(t *testing.T) { f(t, p) })
	}
}

func nextEvent(t *testing.T, sub *Subscription) Event {
	t.Helper()
	select {
	case ev, ok := <-sub.Events():
		if !ok {
			t.Fatalf("subscription ended: %v", sub.Err())
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return Event{}
}

func echoOnce(t *testing.T, conn net.Conn, msg string) {
	t.Helper()
	_, err := conn.Write([]byte(msg))
	require.NoError(t, err)
	buf := make([]byte, len(msg))
	_, err = io.ReadFull(conn, buf)
	require.NoError(t, err)
	assert.Equal(t, msg, string(buf))
}

func TestClientDevicesAndConnect(t *testing.T) {
	bothProtocols(t, func(t *testing.T, proto ProtoVersion) {
		set := NewDeviceSet()
		devs := addEcho(t, set, 3)
		ts := startServer(t, set, nil)
		c := ts.client(t, &ClientOptions{Protocol: proto})
		ctx := context.Background()

		got, err := c.Devices(ctx)
		require.NoError(t, err)
		require.Len(t, got, 3)
		for i, d := range got {
			assert.Equal(t, devs[i].ID, d.ID)
			assert.Equal(t, devs[i].UDID, d.UDID)
			assert.Equal(t, devs[i].ProductID, d.ProductID)
			assert.Equal(t, devs[i].LocationID, d.LocationID)
			assert.Equal(t, "USB", d.ConnectionType)
		}

		conn, err := c.Connect(ctx, devs[1].ID, lockdownPort)
		require.NoError(t, err)
		echoOnce(t, conn, "hello device")
		// Closing the client side closes the device side (§3.6).
		require.NoError(t, conn.Close())

		conn, err = c.ConnectUDID(ctx, devs[2].UDID, lockdownPort)
		require.NoError(t, err)
		echoOnce(t, conn, "by udid")
		conn.Close()

		_, err = c.Connect(ctx, devs[0].ID, 22)
		assert.ErrorIs(t, err, ErrConnRefused)
		_, err = c.Connect(ctx, 999, lockdownPort)
		assert.ErrorIs(t, err, ErrBadDevice)
		_, err = c.ConnectUDID(ctx, "nope", lockdownPort)
		assert.ErrorIs(t, err, ErrNoDevice)
	})
}

func TestClientDeviceEndClosesStream(t *testing.T) {
	set := NewDeviceSet()
	dev := newEchoDevice(t)
	d, err := set.Add(Device{UDID: "u"}, dev.Dial)
	require.NoError(t, err)
	ts := startServer(t, set, nil)
	conn, err := ts.client(t, nil).Connect(context.Background(), d.ID, lockdownPort)
	require.NoError(t, err)
	defer conn.Close()
	echoOnce(t, conn, "x")
	dev.mu.Lock()
	for _, c := range dev.conns {
		c.Close()
	}
	dev.mu.Unlock()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = conn.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "a device-side close closes the client socket")
}

func TestClientListen(t *testing.T) {
	bothProtocols(t, func(t *testing.T, proto ProtoVersion) {
		set := NewDeviceSet()
		devs := addEcho(t, set, 2)
		ts := startServer(t, set, nil)
		c := ts.client(t, &ClientOptions{Protocol: proto})
		sub, err := c.Listen(context.Background())
		require.NoError(t, err)
		defer sub.Close()

		for _, d := range devs {
			ev := nextEvent(t, sub)
			assert.Equal(t, Attached, ev.Kind)
			assert.Equal(t, d.ID, ev.Device.ID)
			assert.Equal(t, d.UDID, ev.Device.UDID)
		}
		d3, err := set.Add(Device{UDID: "third", ProductID: 0x12A8}, nopDial)
		require.NoError(t, err)
		ev := nextEvent(t, sub)
		assert.Equal(t, Attached, ev.Kind)
		assert.Equal(t, "third", ev.Device.UDID)

		set.Remove(devs[0].UDID)
		ev = nextEvent(t, sub)
		assert.Equal(t, Detached, ev.Kind)
		assert.Equal(t, devs[0].ID, ev.Device.ID)
		assert.Equal(t, devs[0].UDID, ev.Device.UDID, "the client remembers what the ID was")

		// A pair record saved with the device's ID reports Paired.
		rec := testRecord()
		require.NoError(t, c.PairRecords().SavePairRecord(context.Background(), "third", rec))
		ev = nextEvent(t, sub)
		assert.Equal(t, Event{Kind: Paired, Device: ev.Device}, ev)
		assert.Equal(t, d3.ID, ev.Device.ID)
		assert.Equal(t, "third", ev.Device.UDID)

		// Listeners are listed (the ID string names the listener itself).
		ls, err := c.ListListeners(context.Background())
		require.NoError(t, err)
		if proto == ProtoPlist {
			require.Len(t, ls, 1)
			assert.Equal(t, "ibackup", ls[0].ProgName)
			assert.Equal(t, uint64(3), ls[0].LibUSBMuxVersion)
			assert.Regexp(t, `^\d+-ibackup$`, ls[0].IDString)
		} else {
			require.Len(t, ls, 1, "a binary listener has no ProgName but is listed")
		}

		require.NoError(t, sub.Close())
		for range sub.Events() {
		}
		assert.NoError(t, sub.Err())
	})
}

func TestClientListenContext(t *testing.T) {
	ts := startServer(t, NewDeviceSet(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := ts.client(t, nil).Listen(ctx)
	require.NoError(t, err)
	cancel()
	for range sub.Events() {
	}
	assert.ErrorIs(t, sub.Err(), context.Canceled)
	sub.Close()
}

func testRecord() *pairrecord.Record {
	return &pairrecord.Record{
		DeviceCertificate: []byte("-----BEGIN CERTIFICATE-----\ndev\n-----END CERTIFICATE-----\n"),
		HostCertificate:   []byte("host cert"),
		HostPrivateKey:    []byte("host key"),
		RootCertificate:   []byte("root cert"),
		RootPrivateKey:    []byte("root key"),
		HostID:            "2E5B5B8A-6C1F-4C5D-9C7E-3C9B0F1F2A3B",
		SystemBUID:        "6F511C79-3A18-4EF0-B7DF-ACA8EEACF9C3",
		EscrowBag:         []byte{1, 2, 3},
		WiFiMACAddress:    "aa:bb:cc:dd:ee:ff",
	}
}

func TestClientPairRecords(t *testing.T) {
	ts := startServer(t, NewDeviceSet(), nil)
	c := ts.client(t, nil)
	store := c.PairRecords()
	ctx := context.Background()
	udid := testUDID(5)

	_, err := store.LoadPairRecord(ctx, udid)
	assert.ErrorIs(t, err, pairrecord.ErrNotFound)
	assert.ErrorIs(t, store.DeletePairRecord(ctx, udid), pairrecord.ErrNotFound)

	rec := testRecord()
	require.NoError(t, store.SavePairRecord(ctx, udid, rec))
	got, err := store.LoadPairRecord(ctx, udid)
	require.NoError(t, err)
	assert.Equal(t, rec, got)

	// On disk: usbmuxd's layout, XML, mode 0600 (§4.1).
	path := filepath.Join(ts.records.Path, udid+".plist")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Contains(t, string(raw), "<key>HostID</key>")

	buid, err := store.SystemBUID(ctx)
	require.NoError(t, err)
	assert.Regexp(t, `^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$`, buid)
	again, err := c.ReadBUID(ctx)
	require.NoError(t, err)
	assert.Equal(t, buid, again, "SystemBUID is stable")

	require.NoError(t, store.DeletePairRecord(ctx, udid))
	_, err = os.Stat(path)
	assert.True(t, os.IsNotExist(err))

	// Bad requests get errno results.
	err = c.SavePairRecord(ctx, udid, []byte("short"), 0)
	assert.Equal(t, &ResultError{Op: MsgSavePairRecord, Code: ResultEINVAL}, err)
	err = c.SavePairRecord(ctx, "../escape", []byte("bplist00........"), 0)
	assert.Equal(t, &ResultError{Op: MsgSavePairRecord, Code: ResultEINVAL}, err)
	_, err = c.ReadPairRecord(ctx, "")
	assert.Equal(t, &ResultError{Op: MsgReadPairRecord, Code: ResultEINVAL}, err)
}

// TestPairRecordCompatibility: records and SystemBUID written by usbmuxd
// (XML, keys in libimobiledevice's order, 0644) are served as they are, and
// what we save is plain XML usbmuxd can read.
func TestPairRecordCompatibility(t *testing.T) {
	ts := startServer(t, NewDeviceSet(), nil)
	c := ts.client(t, nil)
	ctx := context.Background()
	udid := "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
	usbmuxdFile := `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>DeviceCertificate</key>
	<data>
	ZGV2aWNl
	</data>
	<key>HostPrivateKey</key>
	<data>
	aGtleQ==
	</data>
	<key>HostCertificate</key>
	<data>
	aGNlcnQ=
	</data>
	<key>RootPrivateKey</key>
	<data>
	cmtleQ==
	</data>
	<key>RootCertificate</key>
	<data>
	cmNlcnQ=
	</data>
	<key>SystemBUID</key>
	<string>11111111-2222-3333-4444-555555555555</string>
	<key>HostID</key>
	<string>AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE</string>
	<key>EscrowBag</key>
	<data>
	ZXNjcm93
	</data>
	<key>WiFiMACAddress</key>
	<string>00:11:22:33:44:55</string>
</dict>
</plist>
`
	require.NoError(t, os.MkdirAll(ts.records.Path, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(ts.records.Path, udid+".plist"), []byte(usbmuxdFile), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(ts.records.Path, "SystemConfiguration.plist"),
		[]byte(`<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict><key>SystemBUID</key><string>11111111-2222-3333-4444-555555555555</string></dict></plist>`), 0o644))

	raw, err := c.ReadPairRecord(ctx, udid)
	require.NoError(t, err)
	assert.Equal(t, usbmuxdFile, string(raw), "served byte for byte, as usbmuxd does")
	rec, err := c.PairRecords().LoadPairRecord(ctx, udid)
	require.NoError(t, err)
	assert.Equal(t, "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE", rec.HostID)
	assert.Equal(t, []byte("escrow"), rec.EscrowBag)
	buid, err := c.ReadBUID(ctx)
	require.NoError(t, err)
	assert.Equal(t, "11111111-2222-3333-4444-555555555555", buid)

	// A binary record (what libimobiledevice sends) is stored as XML with
	// unknown keys kept.
	bin, err := plistconn.Marshal(map[string]any{"HostID": "H", "Extra": "kept", "RootCertificate": []byte("r")}, plistconn.Binary)
	require.NoError(t, err)
	require.NoError(t, c.SavePairRecord(ctx, "other", bin, 0))
	stored, err := os.ReadFile(filepath.Join(ts.records.Path, "other.plist"))
	require.NoError(t, err)
	assert.Contains(t, string(stored), "<?xml")
	var m map[string]any
	require.NoError(t, plistconn.Unmarshal(stored, &m))
	assert.Equal(t, map[string]any{"HostID": "H", "Extra": "kept", "RootCertificate": []byte("r")}, m)
}

func TestDeviceDialerFollowsReplug(t *testing.T) {
	set := NewDeviceSet()
	dev := newEchoDevice(t)
	_, err := set.Add(Device{UDID: "phone"}, dev.Dial)
	require.NoError(t, err)
	ts := startServer(t, set, nil)
	dialer := ts.client(t, nil).Dialer("phone")
	ctx := context.Background()
	conn, err := dialer.Dial(ctx, lockdownPort)
	require.NoError(t, err)
	echoOnce(t, conn, "1")
	conn.Close()

	set.Remove("phone")
	require.Eventually(t, func() bool { return len(ts.srv.Devices()) == 0 }, 5*time.Second, time.Millisecond)
	_, err = dialer.Dial(ctx, lockdownPort)
	assert.ErrorIs(t, err, ErrNoDevice)
	d, err := set.Add(Device{UDID: "phone"}, dev.Dial)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(ts.srv.Devices()) == 1 }, 5*time.Second, time.Millisecond)
	conn, err = dialer.Dial(ctx, lockdownPort)
	require.NoError(t, err, "the new ID %d is looked up", d.ID)
	echoOnce(t, conn, "2")
	conn.Close()
}

func TestClientContextCancelsRequest(t *testing.T) {
	// A daemon that accepts and never answers.
	dir := shortTempDir(t)
	l, err := net.Listen("unix", filepath.Join(dir, "s"))
	require.NoError(t, err)
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := NewClient(filepath.Join(dir, "s"), nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.ReadBUID(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	(<-accepted).Close()
}

// TestClientFallsBackToBinary: a daemon that answers BADVERSION to plist
// makes the client use the binary protocol (§3.3).
func TestClientFallsBackToBinary(t *testing.T) {
	dir := shortTempDir(t)
	l, err := net.Listen("unix", filepath.Join(dir, "s"))
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			fr := NewFramer(conn, conn)
			f, err := fr.ReadFrame()
			if err == nil {
				switch f.Type {
				case TypePlist:
					_ = fr.WriteFrame(&Frame{Type: TypeResult, Tag: f.Tag, Payload: AppendResult(nil, ResultBadVersion)})
				case TypeListen:
					_ = fr.WriteFrame(&Frame{Type: TypeResult, Tag: f.Tag, Payload: AppendResult(nil, ResultOK)})
					_ = fr.WriteFrame(&Frame{Type: TypeDeviceAdd, Payload: DeviceRecord{DeviceID: 4, SerialNumber: "old"}.Append(nil)})
					_, _ = fr.ReadFrame() // until the client hangs up
				}
			}
			conn.Close()
		}
	}()
	c, err := NewClient("UNIX:"+filepath.Join(dir, "s"), nil)
	require.NoError(t, err)
	devs, err := c.Devices(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []Device{{ID: 4, UDID: "old", ConnectionType: "USB"}}, devs)
	assert.True(t, c.binary.Load())
	l.Close()
	<-done
}
