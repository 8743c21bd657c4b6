package mobilebackup2_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/fakedevice/devmux"
	"github.com/ibackup/ibackup/fakedevice/memlink"
	"github.com/ibackup/ibackup/mobilebackup2"
	"github.com/ibackup/ibackup/usbmux"
)

// muxSession runs the fake BackupAgent behind the real USB mux over an
// in-memory link (usbmux ↔ memlink ↔ devmux) and returns a handshaken
// client, the link faults and a cleanup that waits for everything.
func muxSession(t testing.TB, cfg backupagent.Config) (*mobilebackup2.Client, *memlink.Faults, func() error) {
	t.Helper()
	const port = 49200
	hostLink, devLink, faults := memlink.New(memlink.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	srv := devmux.New(devLink, nil)
	ln, err := srv.Listen(port)
	require.NoError(t, err)
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ctx) }()
	// Work-around for devmux: data the device writes right after accepting
	// can overtake its SYN-ACK, and the host then refuses the dial (reported
	// to the mux owner). DeviceLink always has the device speak first, so
	// the device's first write waits until the host's Dial returned.
	dialed := make(chan struct{})
	agentDone := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			agentDone <- err
			return
		}
		agentDone <- backupagent.Serve(ctx, &gatedConn{Conn: c, gate: dialed}, cfg)
	}()
	mux, err := usbmux.NewMux(ctx, hostLink, nil)
	require.NoError(t, err)
	conn, err := mux.Dial(ctx, port)
	require.NoError(t, err)
	close(dialed)
	c := mobilebackup2.NewClient(conn)
	_, err = c.Handshake(ctx)
	require.NoError(t, err)
	return c, faults, func() error {
		c.Close()
		var aerr error
		select {
		case aerr = <-agentDone:
		case <-time.After(10 * time.Second):
			aerr = fmt.Errorf("agent did not finish")
		}
		cancel()
		mux.Close()
		srv.Close()
		<-srvDone
		return aerr
	}
}

// gatedConn holds its first Write until gate is closed.
type gatedConn struct {
	net.Conn
	gate chan struct{}
}

func (g *gatedConn) Write(p []byte) (int, error) {
	<-g.gate
	return g.Conn.Write(p)
}

func TestBackupOverUSBMux(t *testing.T) {
	content, dir := t.TempDir(), t.TempDir()
	writeTree(t, content, map[string]string{
		"HomeDomain/Library/a":  "a",
		"MediaDomain/Media/big": string(make([]byte, 300<<10)),
	})
	cfg := backupagent.Config{ContentDir: content, WorkDir: t.TempDir()}
	c, _, done := muxSession(t, cfg)
	_, err := c.Backup(context.Background(), opts(dir))
	require.NoError(t, err)
	require.NoError(t, done())
	assert.Equal(t, contentOf(t, content), decode(t, filepath.Join(dir, testUDID)))

	// Unplugged mid-backup: clear error, last good backup intact, next run fine.
	writeTree(t, content, map[string]string{"MediaDomain/Media/big2": string(make([]byte, 300<<10))})
	before := treeSnapshot(t, dir)
	bad := cfg
	var faults *memlink.Faults
	bad.Faults.OnFile = func(n int) { faults.Drop() }
	c, faults, done = muxSession(t, bad)
	_, err = c.Backup(context.Background(), opts(dir))
	require.ErrorIs(t, err, mobilebackup2.ErrDisconnected)
	_ = done()
	assert.Equal(t, before, treeSnapshot(t, dir))

	c, _, done = muxSession(t, cfg)
	_, err = c.Backup(context.Background(), opts(dir))
	require.NoError(t, err)
	require.NoError(t, done())
	assert.Equal(t, contentOf(t, content), decode(t, filepath.Join(dir, testUDID)))
}

// BenchmarkBackupOverUSBMux reports full-backup throughput over the
// in-memory USB link (usbmux + devmux), with verification.
func BenchmarkBackupOverUSBMux(b *testing.B) {
	content := b.TempDir()
	const files, size = 32, 1 << 20
	buf := make([]byte, size)
	for i := range files {
		_, _ = rand.Read(buf)
		p := filepath.Join(content, "MediaDomain", fmt.Sprintf("f%03d", i))
		require.NoError(b, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(b, os.WriteFile(p, buf, 0o644))
	}
	cfg := backupagent.Config{ContentDir: content, WorkDir: b.TempDir(), NoDigest: true}
	dir := b.TempDir()
	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		c, _, done := muxSession(b, cfg)
		o := opts(dir)
		o.Full, o.Keep = true, 1
		start := time.Now()
		_, err := c.Backup(context.Background(), o)
		total += time.Since(start)
		require.NoError(b, err)
		require.NoError(b, done())
	}
	b.ReportMetric(float64(files*size)/1e6/(total.Seconds()/float64(b.N)), "MB/s")
}
