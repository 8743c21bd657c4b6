package mobilebackup2_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/fakedevice/fakenet"
	"github.com/ibackup/ibackup/mobilebackup2"
	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/snapshot"
)

const testUDID = "00008110-000A1B2C3D4E5F60"

// pipe returns both ends of a buffered loopback connection.
func pipe(t testing.TB) (host, device net.Conn) { return fakenet.Pipe(t) }

// session starts the fake agent and returns a handshaken client plus a
// function that closes the client and returns the agent's error.
func session(t testing.TB, cfg backupagent.Config) (*mobilebackup2.Client, func() error) {
	t.Helper()
	host, dev := pipe(t)
	done := make(chan error, 1)
	go func() { done <- backupagent.Serve(context.Background(), dev, cfg) }()
	c := mobilebackup2.NewClient(host)
	_, err := c.Handshake(context.Background())
	require.NoError(t, err)
	return c, func() error {
		c.Close()
		return <-done
	}
}

func infoInput() *mobilebackup2.InfoInput {
	return &mobilebackup2.InfoInput{Values: map[string]any{
		"BuildVersion": "21F90", "DeviceName": "Test iPhone", "ProductType": "iPhone14,5",
		"ProductVersion": "17.5.1", "SerialNumber": "F2LXXXXXXXXX", "UniqueDeviceID": testUDID,
	}}
}

func opts(dir string) mobilebackup2.BackupOptions {
	return mobilebackup2.BackupOptions{Dir: dir, Target: testUDID, Info: infoInput(), NoSync: true}
}

// writeTree writes files "<Domain>/<rel>" → content under dir.
func writeTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(c), 0o644))
	}
}

// backupOnce runs one backup session.
func backupOnce(t testing.TB, cfg backupagent.Config, o mobilebackup2.BackupOptions) (*mobilebackup2.Result, error, error) {
	t.Helper()
	c, closeFn := session(t, cfg)
	res, err := c.Backup(context.Background(), o)
	agentErr := closeFn()
	return res, err, agentErr
}

// contentOf returns "<Domain>/<rel>" → bytes for the regular files of a
// content tree.
func contentOf(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		require.NoError(t, err)
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			out[filepath.ToSlash(rel)] = string(b)
		}
		return nil
	}))
	return out
}

// decode reads a backup folder back into "<Domain>/<rel>" → bytes using its
// Manifest.db, the way another tool would.
func decode(t testing.TB, udidDir string) map[string]string {
	t.Helper()
	db, err := backupfmt.OpenManifestDB(filepath.Join(udidDir, "Manifest.db"))
	require.NoError(t, err)
	defer db.Close()
	out := map[string]string{}
	require.NoError(t, db.Each(func(r backupfmt.Record) error {
		if r.Type() == backupfmt.FlagFile {
			b, err := os.ReadFile(filepath.Join(udidDir, r.FileID[:2], r.FileID))
			require.NoError(t, err, "%s/%s", r.Domain, r.RelativePath)
			out[r.Domain+"/"+r.RelativePath] = string(b)
		}
		return nil
	}))
	return out
}

// verifyRecord re-hashes a version against its record (what a later
// `ibackup verify` does) and returns the mismatching paths.
func verifyRecord(t testing.TB, v snapshot.Version, udid string) []string {
	t.Helper()
	require.NotNil(t, v.Record)
	var bad []string
	n := 0
	require.NoError(t, v.Record.Each(func(e snapshot.Entry) error {
		n++
		b, err := os.ReadFile(filepath.Join(v.Path(udid), filepath.FromSlash(e.Path)))
		if err != nil || int64(len(b)) != e.Size || sha1hex(b) != e.SumHex() {
			bad = append(bad, e.Path)
		}
		return nil
	}))
	require.Positive(t, n, "the record lists no file")
	assert.Equal(t, v.Record.Count, int64(n), "record header count")
	sort.Strings(bad)
	return bad
}

// assertNothingOutside checks that no file appeared under dir except the
// listed top-level names.
func assertOnlyEntries(t testing.TB, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	sort.Strings(got)
	sort.Strings(names)
	assert.Equal(t, names, got)
}

func treeSnapshot(t testing.TB, dir string) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(rel, ".ibackup/"+testUDID+"/lock") {
			return nil
		}
		b.WriteString(rel)
		if d.Type().IsRegular() {
			c, err := os.ReadFile(p)
			require.NoError(t, err)
			b.WriteString("=" + sha1hex(c))
		}
		b.WriteString("\n")
		return nil
	}))
	return b.String()
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

func fmtArgs(a []any) string { return fmt.Sprint(a...) }
