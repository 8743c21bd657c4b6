package mobilebackup2_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/lockdown/plistconn"
	"github.com/ibackup/ibackup/mobilebackup2"
	"github.com/ibackup/ibackup/mobilebackup2/devicelink"
)

// evilSession runs a scripted phone: handshake, read the Backup request,
// run script, then report success. It returns the host's Backup error.
func evilSession(t *testing.T, dir string, script func(dl *devicelink.Conn, u string) error) error {
	t.Helper()
	host, dev := pipe(t)
	done := make(chan error, 1)
	go func() {
		defer dev.Close()
		dl := devicelink.NewConn(dev, plistconn.Binary)
		if err := dl.AcceptVersionExchange(400, 0); err != nil {
			done <- err
			return
		}
		if _, err := dl.Read(); err != nil { // Hello
			done <- err
			return
		}
		_ = dl.WriteProcessMessage(map[string]any{"MessageName": "Response", "ErrorCode": 0, "ProtocolVersion": 2.1})
		m, err := dl.Read() // Backup
		if err != nil {
			done <- err
			return
		}
		u, _ := m.Arg(0).(map[string]any)["TargetIdentifier"].(string)
		if err := script(dl, u); err != nil {
			done <- err
			return
		}
		done <- dl.WriteProcessMessage(map[string]any{"MessageName": "Response", "ErrorCode": 0})
	}()
	c := mobilebackup2.NewClient(host)
	defer c.Close()
	_, err := c.Handshake(context.Background())
	require.NoError(t, err)
	_, berr := c.Backup(context.Background(), opts(dir))
	host.Close()
	<-done
	return berr
}

func uploadOne(dl *devicelink.Conn, host string) error {
	w := dl.Stream()
	if err := devicelink.WriteName(w, "/var/mobile/x"); err != nil {
		return err
	}
	if err := devicelink.WriteName(w, host); err != nil {
		return err
	}
	_, err := devicelink.SendFile(w, stringsReader("pwned"))
	return err
}

func TestMaliciousPathsStayInside(t *testing.T) {
	content, dir, outside := t.TempDir(), t.TempDir(), t.TempDir()
	writeTree(t, content, map[string]string{"HomeDomain/a": "a"})
	good, err, _ := backupOnce(t, backupagent.Config{ContentDir: content, WorkDir: t.TempDir()}, opts(dir))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600))
	// A symlink inside the backup pointing out (planted by another tool).
	require.NoError(t, os.Symlink(outside, filepath.Join(good.Version.Path(testUDID), "evil")))
	abs := filepath.Join(outside, "abs.txt")

	statuses := map[string]int32{}
	var listing any
	berr := evilSession(t, dir, func(dl *devicelink.Conn, u string) error {
		if err := dl.Write(devicelink.MsgUploadFiles, map[string]any{}, 1.0, uint64(5)); err != nil {
			return err
		}
		for _, p := range []string{"../escape.txt", abs, u + "/../../escape2.txt", u + "/evil/pwned", u + "/ok.txt"} {
			if err := uploadOne(dl, p); err != nil {
				return err
			}
		}
		if err := devicelink.WriteEnd(dl.Stream()); err != nil {
			return err
		}
		req := func(name string, args ...any) error {
			if err := dl.Write(name, args...); err != nil {
				return err
			}
			m, err := dl.Read()
			if err != nil {
				return err
			}
			st, err := devicelink.ParseStatus(m)
			if err != nil {
				return err
			}
			statuses[name+" "+fmtArgs(args)] = st.Code
			if name == devicelink.MsgContentsOfDir {
				listing = st.Extra
			}
			return nil
		}
		m, err := dl.Read()
		if err != nil {
			return err
		}
		st, _ := devicelink.ParseStatus(m)
		statuses["upload"] = st.Code
		// DownloadFiles through the symlink and via "..".
		if err := dl.Write(devicelink.MsgDownloadFiles, []any{u + "/evil/secret", "../x"}, map[string]any{}, 1.0, uint64(0)); err != nil {
			return err
		}
		for range 2 {
			if _, _, err := devicelink.ReadName(dl.Stream()); err != nil {
				return err
			}
			res, err := devicelink.ReceiveFile(dl.Stream(), discard{})
			if err != nil {
				return err
			}
			statuses["download code "+res.Code.String()]++
		}
		if _, _, err := devicelink.ReadName(dl.Stream()); err != nil {
			return err
		}
		if m, err = dl.Read(); err != nil {
			return err
		}
		st, _ = devicelink.ParseStatus(m)
		statuses["download"] = st.Code
		for _, step := range [][]any{
			{devicelink.MsgMoveItems, map[string]any{u + "/ok.txt": u + "/evil/moved"}},
			{devicelink.MsgMoveItems, map[string]any{u + "/ok.txt": "../moved"}},
			{devicelink.MsgCopyItem, u + "/ok.txt", u + "/evil/copy"},
			{devicelink.MsgRemoveItems, []any{u + "/evil/secret"}},
			{devicelink.MsgRemoveItems, []any{"../" + filepath.Base(dir)}},
			{devicelink.MsgCreateDirectory, u + "/evil/newdir"},
			{devicelink.MsgContentsOfDir, u + "/evil"},
		} {
			if err := req(step[0].(string), step[1:]...); err != nil {
				return err
			}
		}
		return nil
	})
	// The backup itself is consistent (the previous files are all there), so
	// the run may succeed; what matters is that nothing escaped.
	_ = berr
	assert.NotEqual(t, int32(0), statuses["upload"])
	assert.Equal(t, int32(devicelink.StatusMultiStatus), statuses["download"])
	assert.Equal(t, int32(2), statuses["download code CODE_ERROR_LOCAL"])
	for k, v := range statuses {
		if k != "upload" && k != "download" && k[:8] != "download" {
			assert.NotEqual(t, int32(0), v, k)
		}
	}
	assert.NotContains(t, listing, "secret")
	// Nothing escaped.
	b, err := os.ReadFile(filepath.Join(outside, "secret"))
	require.NoError(t, err)
	assert.Equal(t, "secret", string(b))
	assertOnlyEntries(t, outside, "secret")
	assertOnlyEntries(t, dir, ".ibackup", testUDID)
	assertOnlyEntries(t, filepath.Join(dir, ".ibackup", testUDID), "lock", "versions")
	for _, n := range []string{"escape.txt", "escape2.txt", "moved"} {
		_, err := os.Lstat(filepath.Join(filepath.Dir(dir), n))
		assert.True(t, os.IsNotExist(err), n)
	}
}

func TestMaliciousGiantLengths(t *testing.T) {
	raw := func(b ...byte) func(dl *devicelink.Conn, u string) error {
		return func(dl *devicelink.Conn, u string) error {
			if err := dl.Write(devicelink.MsgUploadFiles, map[string]any{}, 1.0, uint64(0)); err != nil {
				return err
			}
			_, err := dl.Stream().Write(b)
			return err
		}
	}
	be := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	name := func(s string) []byte { return append(be(uint32(len(s))), s...) }
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := map[string]func(dl *devicelink.Conn, u string) error{
		"name length 4 GiB":        raw(be(0xFFFFFFFF)...),
		"frame length 4 GiB":       raw(cat(name("d"), name(testUDID+"/f"), be(0xFFFFFFFF), []byte{0x0C})...),
		"frame 200 MiB then close": raw(cat(name("d"), name(testUDID+"/f"), be(200<<20), []byte{0x0C}, make([]byte, 1000))...),
		"message length 2 GiB": func(dl *devicelink.Conn, u string) error {
			_, err := dl.Stream().Write(be(0x7FFFFFFF))
			return err
		},
	}
	for n, script := range tests {
		t.Run(n, func(t *testing.T) {
			dir := t.TempDir()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := evilSession(t, dir, script)
			runtime.ReadMemStats(&after)
			require.Error(t, err)
			assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20), "allocated too much")
			assertOnlyEntries(t, dir, ".ibackup")
		})
	}
}
