package backupagent_test

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/fakedevice/fakenet"
	"github.com/ibackup/ibackup/lockdown/plistconn"
	"github.com/ibackup/ibackup/mobilebackup2"
	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/devicelink"
)

const udid = "00008110-000A1B2C3D4E5F60"

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pipe returns both ends of a buffered loopback connection.
func pipe(t *testing.T) (host, device net.Conn) { return fakenet.Pipe(t) }

func start(t *testing.T, cfg backupagent.Config) (*mobilebackup2.Client, chan error) {
	t.Helper()
	h, d := pipe(t)
	done := make(chan error, 1)
	go func() { done <- backupagent.Serve(context.Background(), d, cfg) }()
	return mobilebackup2.NewClient(h), done
}

func content(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "HomeDomain", "Library", "a.txt")
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte("hello"), 0o644))
	return dir
}

func backupOpts(dir string) mobilebackup2.BackupOptions {
	return mobilebackup2.BackupOptions{Dir: dir, Target: udid, NoSync: true, Info: &mobilebackup2.InfoInput{Values: map[string]any{
		"BuildVersion": "21F90", "DeviceName": "d", "ProductType": "iPhone14,5", "ProductVersion": "17.5", "SerialNumber": "S"}}}
}

func TestHelloVersions(t *testing.T) {
	for _, tc := range []struct {
		cfg     backupagent.Config
		version float64
		err     error
	}{
		{cfg: backupagent.Config{DLMajor: 300}, version: 2.1},
		{cfg: backupagent.Config{ProtocolVersion: 2.0}, version: 2.0},
		{cfg: backupagent.Config{ProtocolVersion: 3.0}, err: mobilebackup2.ErrNoCommonVersion},
	} {
		c, done := start(t, tc.cfg)
		v, err := c.Handshake(context.Background())
		if tc.err != nil {
			assert.ErrorIs(t, err, tc.err)
		} else {
			require.NoError(t, err)
			assert.Equal(t, tc.version, v)
		}
		c.Close()
		assert.NoError(t, <-done)
	}
}

func backup(t *testing.T, cfg backupagent.Config, o mobilebackup2.BackupOptions) (*mobilebackup2.Result, error) {
	t.Helper()
	c, done := start(t, cfg)
	_, err := c.Handshake(context.Background())
	require.NoError(t, err)
	res, err := c.Backup(context.Background(), o)
	c.Close()
	require.NoError(t, <-done)
	return res, err
}

func TestIncrementalDecisions(t *testing.T) {
	cdir, dir := content(t), t.TempDir()
	cfg := backupagent.Config{ContentDir: cdir, WorkDir: t.TempDir()}
	res, err := backup(t, cfg, backupOpts(dir))
	require.NoError(t, err)
	assert.True(t, res.FullBackup)

	res, err = backup(t, cfg, backupOpts(dir))
	require.NoError(t, err)
	assert.False(t, res.FullBackup, "finished Status.plist + Manifest.db → incremental")
	assert.Equal(t, 6, res.FilesReceived, "nothing changed: only metadata")

	o := backupOpts(dir)
	o.Full = true
	res, err = backup(t, cfg, o)
	require.NoError(t, err)
	assert.True(t, res.FullBackup, "ForceFullBackup")
	assert.Equal(t, 7, res.FilesReceived)

	// Manifest.db rows carry MBFile metadata from the file system.
	db, err := backupfmt.OpenManifestDB(filepath.Join(dir, udid, "Manifest.db"))
	require.NoError(t, err)
	defer db.Close()
	r, err := db.Lookup(backupfmt.FileID("HomeDomain", "Library/a.txt"))
	require.NoError(t, err)
	require.NotNil(t, r.File)
	assert.Equal(t, int64(5), r.File.Size)
	assert.Len(t, r.File.Digest, 20)
	assert.Equal(t, backupfmt.FlagFile, r.Type())
	r, err = db.Lookup(backupfmt.FileID("HomeDomain", "Library"))
	require.NoError(t, err)
	assert.Equal(t, backupfmt.FlagDirectory, r.Type())
}

// TestZeroLengthManifestPlistIs205: pitfall 5 of §8.
func TestZeroLengthManifestPlistIs205(t *testing.T) {
	cdir, dir := content(t), t.TempDir()
	cfg := backupagent.Config{ContentDir: cdir, WorkDir: t.TempDir()}
	_, err := backup(t, cfg, backupOpts(dir))
	require.NoError(t, err)
	// Pitfall 5: another tool left an empty Manifest.plist.
	real, err := filepath.EvalSymlinks(filepath.Join(dir, udid))
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(real, "Manifest.plist")))
	require.NoError(t, os.WriteFile(filepath.Join(real, "Manifest.plist"), nil, 0o644))
	_, err = backup(t, cfg, backupOpts(dir))
	var de *mobilebackup2.DeviceError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, int64(205), de.Code)
}

// TestHostThatLies: a host that accepts every upload but lists nothing
// gets 205 "Manifest references files not in backup" (§4.3 step 16).
func TestHostThatLies(t *testing.T) {
	h, d := pipe(t)
	done := make(chan error, 1)
	go func() {
		done <- backupagent.Serve(context.Background(), d, backupagent.Config{ContentDir: content(t), WorkDir: t.TempDir()})
	}()
	defer h.Close()
	dl := devicelink.NewConn(h, plistconn.Binary)
	_, _, err := dl.VersionExchange()
	require.NoError(t, err)
	require.NoError(t, dl.WriteProcessMessage(map[string]any{"MessageName": "Hello", "SupportedProtocolVersions": []float64{2.0, 2.1}}))
	_, err = dl.Read()
	require.NoError(t, err)
	require.NoError(t, dl.WriteProcessMessage(map[string]any{"MessageName": "Backup", "TargetIdentifier": udid}))
	for {
		m, err := dl.Read()
		require.NoError(t, err)
		switch m.Name {
		case devicelink.MsgProcessMessage:
			res := m.Arg(0).(map[string]any)
			code, _ := devicelink.Int(res["ErrorCode"])
			assert.Equal(t, int64(205), code)
			assert.Equal(t, "Manifest references files not in backup", res["ErrorDescription"])
			require.NoError(t, dl.Disconnect())
			assert.NoError(t, <-done)
			return
		case devicelink.MsgDownloadFiles:
			// Honest about having nothing: every file is missing.
			answerMissing(t, dl, h, m)
		case devicelink.MsgUploadFiles:
			for {
				_, end, err := devicelink.ReadName(h)
				require.NoError(t, err)
				if end {
					break
				}
				_, _, err = devicelink.ReadName(h)
				require.NoError(t, err)
				_, err = devicelink.ReceiveFile(h, discard{})
				require.NoError(t, err)
			}
			require.NoError(t, dl.WriteStatus(0, "", nil))
		case devicelink.MsgGetFreeDiskSpace:
			require.NoError(t, dl.WriteStatus(0, "", uint64(1<<40)))
		default: // lies: "done" for everything, empty listings
			require.NoError(t, dl.WriteStatus(0, "", nil))
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestPurgeThen105: with Purge the agent asks the host to free space, the
// host declines (-1), the agent re-checks and gives up with 105 (§4.2).
func TestPurgeThen105(t *testing.T) {
	cdir, dir := content(t), t.TempDir()
	o := backupOpts(dir)
	o.SpaceLimit = 1 << 20
	_, err := backup(t, backupagent.Config{ContentDir: cdir, WorkDir: t.TempDir(), Purge: true}, o)
	var de *mobilebackup2.DeviceError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, int64(105), de.Code)
	assert.Contains(t, de.Hint(), "free space")
}

// answerMissing answers a DownloadFiles request as a host that has none of
// the files: one ERROR_LOCAL frame per file, then a multi-status (§3.2).
func answerMissing(t *testing.T, dl *devicelink.Conn, h io.Writer, m *devicelink.Message) {
	t.Helper()
	for _, p := range m.Arg(0).([]any) {
		require.NoError(t, devicelink.WriteName(h, p.(string)))
		require.NoError(t, devicelink.WriteFrame(h, devicelink.CodeErrorLocal, []byte("No such file or directory")))
	}
	require.NoError(t, devicelink.WriteEnd(h))
	require.NoError(t, dl.WriteStatus(devicelink.StatusMultiStatus, "Multi status", nil))
}
