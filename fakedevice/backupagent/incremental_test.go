package backupagent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/lockdown/plistconn"
	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/devicelink"
)

// manifestRows reads the Files table of the backup in dir.
func manifestRows(t *testing.T, dir string) map[string]backupfmt.Record {
	t.Helper()
	db, err := backupfmt.OpenManifestDB(filepath.Join(dir, udid, "Manifest.db"))
	require.NoError(t, err)
	defer db.Close()
	out := map[string]backupfmt.Record{}
	require.NoError(t, db.Each(func(r backupfmt.Record) error {
		require.NoError(t, r.FileErr)
		out[r.FileID] = r
		return nil
	}))
	return out
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(s), 0o644))
}

// TestIncrementalManifestUpdate: an incremental backup applies the changes
// to the previous Manifest.db; the result has exactly the rows a full
// backup of the same tree has, with or without the phone's cache, and only
// new or changed content is sent.
func TestIncrementalManifestUpdate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cache *backupagent.Cache
		mbdb  bool
	}{
		{name: "cache", cache: backupagent.NewCache()},
		{name: "no-cache"},
		{name: "mbdb", cache: backupagent.NewCache(), mbdb: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cdir, dir := t.TempDir(), t.TempDir()
			home := filepath.Join(cdir, "HomeDomain", "Library")
			for _, n := range []string{"a", "b", "c", "d"} {
				writeFile(t, filepath.Join(home, n+".txt"), "content "+n)
			}
			require.NoError(t, os.Symlink("a.txt", filepath.Join(home, "link")))
			old := time.Now().Add(-time.Hour).Truncate(time.Second)
			require.NoError(t, os.Chtimes(filepath.Join(home, "a.txt"), old, old))
			cfg := backupagent.Config{ContentDir: cdir, WorkDir: t.TempDir(), Cache: tc.cache, MBDB: tc.mbdb}
			res, err := backup(t, cfg, backupOpts(dir))
			require.NoError(t, err)
			require.True(t, res.FullBackup)

			// a.txt: same size and mtime, new content (only its digest tells);
			// b.txt grows; c.txt goes; e.txt is new; d.txt stays.
			writeFile(t, filepath.Join(home, "a.txt"), "CONTENT a")
			require.NoError(t, os.Chtimes(filepath.Join(home, "a.txt"), old, old))
			writeFile(t, filepath.Join(home, "b.txt"), "content b, longer")
			require.NoError(t, os.Remove(filepath.Join(home, "c.txt")))
			writeFile(t, filepath.Join(cdir, "MediaDomain", "e.txt"), "content e")
			res, err = backup(t, cfg, backupOpts(dir))
			require.NoError(t, err)
			require.False(t, res.FullBackup)
			assert.Equal(t, 6+3, res.FilesReceived, "metadata + a, b, e")
			if tc.mbdb {
				return // Manifest.mbdb is rebuilt whole; its rows are checked in mbdb_test.go
			}
			got := manifestRows(t, dir)

			full := t.TempDir()
			o := backupOpts(full)
			o.Full = true
			_, err = backup(t, backupagent.Config{ContentDir: cdir, WorkDir: t.TempDir(), MBDB: tc.mbdb}, o)
			require.NoError(t, err)
			want := manifestRows(t, full)
			assert.Equal(t, want, got)
			assert.NotContains(t, got, backupfmt.FileID("HomeDomain", "Library/c.txt"))
			assert.Contains(t, got, backupfmt.FileID("MediaDomain", "e.txt"))
			hostFile := func(domain, rel string) string {
				id := backupfmt.FileID(domain, rel)
				return filepath.Join(dir, udid, id[:2], id)
			}
			assert.FileExists(t, hostFile("MediaDomain", "e.txt"))
			assert.NoFileExists(t, hostFile("HomeDomain", "Library/c.txt"), "removed on the host (§4.3 step 13)")
		})
	}
}

// TestBatchesOf128: content goes up in UploadFiles batches of at most 128
// files and is committed in MoveItems batches of at most 128 (§4.3 steps 8
// and 11); the metadata follows in batches of its own.
func TestBatchesOf128(t *testing.T) {
	cdir := t.TempDir()
	for i := range 300 {
		writeFile(t, filepath.Join(cdir, "HomeDomain", fmt.Sprintf("f%03d", i)), "x")
	}
	h, d := pipe(t)
	done := make(chan error, 1)
	go func() {
		done <- backupagent.Serve(context.Background(), d, backupagent.Config{ContentDir: cdir, WorkDir: t.TempDir()})
	}()
	defer h.Close()
	dl := devicelink.NewConn(h, plistconn.Binary)
	_, _, err := dl.VersionExchange()
	require.NoError(t, err)
	require.NoError(t, dl.WriteProcessMessage(map[string]any{"MessageName": "Hello", "SupportedProtocolVersions": []float64{2.0, 2.1}}))
	_, err = dl.Read()
	require.NoError(t, err)
	require.NoError(t, dl.WriteProcessMessage(map[string]any{"MessageName": "Backup", "TargetIdentifier": udid}))
	var uploads, moves []int
	for {
		m, err := dl.Read()
		require.NoError(t, err)
		switch m.Name {
		case devicelink.MsgProcessMessage: // the result: 205, this host lists nothing
			require.NoError(t, dl.Disconnect())
			assert.NoError(t, <-done)
			assert.Equal(t, []int{1, 128, 128, 44, 2, 1, 1, 1}, uploads, "Status, content, metadata, Status ×3")
			assert.Equal(t, []int{128, 128, 44, 2}, moves)
			return
		case devicelink.MsgDownloadFiles:
			answerMissing(t, dl, h, m)
		case devicelink.MsgUploadFiles:
			n := 0
			for ; ; n++ {
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
			uploads = append(uploads, n)
			require.NoError(t, dl.WriteStatus(0, "", nil))
		case devicelink.MsgMoveItems:
			moves = append(moves, len(m.Arg(0).(map[string]any)))
			require.NoError(t, dl.WriteStatus(0, "", nil))
		case devicelink.MsgGetFreeDiskSpace:
			require.NoError(t, dl.WriteStatus(0, "", uint64(1<<40)))
		default:
			require.NoError(t, dl.WriteStatus(0, "", nil))
		}
	}
}
