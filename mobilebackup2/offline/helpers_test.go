package offline

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/keybag"
)

const testUDID = "00008101-000000000000001E"

var testNow = time.Date(2026, 11, 24, 20, 0, 0, 0, time.UTC)

type chachaReader struct{ r *rand.ChaCha8 }

func (c chachaReader) Read(p []byte) (int, error) { return c.r.Read(p) }

func testRand(seed byte) chachaReader { return chachaReader{rand.NewChaCha8([32]byte{seed})} }

// testItem is one item of a constructed backup.
type testItem struct {
	Domain, Path string
	Mode         uint16
	Content      []byte
	Target       string
	Class        int
}

func testItems(nFiles int) []testItem {
	items := []testItem{
		{Domain: "HomeDomain", Path: "", Mode: 0o40755},
		{Domain: "HomeDomain", Path: "Library", Mode: 0o40755},
		{Domain: "HomeDomain", Path: "Library/SMS", Mode: 0o40755},
		{Domain: "HomeDomain", Path: "Library/SMS/sms.db", Mode: 0o100644, Content: []byte("sqlite-ish sms data"), Class: 3},
		{Domain: "HomeDomain", Path: "Library/empty", Mode: 0o100600, Content: []byte{}},
		{Domain: "HomeDomain", Path: "Library/link", Mode: 0o120755, Target: "SMS/sms.db"},
		{Domain: "AppDomain-com.example.app", Path: "Documents", Mode: 0o40755},
		{Domain: "CameraRollDomain", Path: "Media/DCIM", Mode: 0o40755},
	}
	for i := 0; i < nFiles; i++ {
		content := bytes.Repeat([]byte{byte(i)}, 100+i*37)
		items = append(items, testItem{Domain: "AppDomain-com.example.app", Path: fmt.Sprintf("Documents/file%03d.txt", i),
			Mode: 0o100644, Content: content, Class: 4})
	}
	items = append(items, testItem{Domain: "CameraRollDomain", Path: "Media/DCIM/IMG_0001.JPG", Mode: 0o100644,
		Content: bytes.Repeat([]byte("jpeg"), 5000)})
	return items
}

type buildOpts struct {
	format   Format
	password string
	digests  bool
	nFiles   int
}

// buildBackup writes a backup with this package's writer and returns its folder.
func buildBackup(t testing.TB, root string, o buildOpts) string {
	t.Helper()
	dir := filepath.Join(root, testUDID)
	cfg := WriterConfig{
		Format: o.format, Password: o.password, Digests: o.digests,
		KeybagOptions: keybag.NewOptions{Iter: 2, DPIC: 2},
		Now:           func() time.Time { return testNow }, Rand: testRand(7),
		Info: &backupfmt.Info{DeviceName: "Test iPhone", DisplayName: "Test iPhone", ProductType: "iPhone13,2",
			ProductVersion: "14.3", BuildVersion: "18C66", SerialNumber: "F00000000000", TargetIdentifier: testUDID,
			TargetType: "Device", UniqueIdentifier: testUDID, GUID: "0123456789ABCDEF0123456789ABCDEF",
			LastBackupDate: testNow, ITunesVersion: "10.0.1"},
		Manifest: backupfmt.Manifest{Lockdown: backupfmt.Lockdown{ProductVersion: "14.3", BuildVersion: "18C66",
			ProductType: "iPhone13,2", DeviceName: "Test iPhone", SerialNumber: "F00000000000", UniqueDeviceID: testUDID}},
		Status: backupfmt.Status{IsFullBackup: true},
	}
	if o.format == FormatMBDB {
		cfg.Info.ProductVersion, cfg.Manifest.Lockdown.ProductVersion = "9.3.6", "9.3.6"
	}
	w, err := NewWriter(dir, cfg)
	require.NoError(t, err)
	n := o.nFiles
	if n == 0 {
		n = 5
	}
	for i, it := range testItems(n) {
		f := &backupfmt.MBFile{RelativePath: it.Path, Target: it.Target, Mode: it.Mode, UserID: 501, GroupID: 501,
			LastModified: testNow.Unix() - int64(i*60), LastStatusChange: testNow.Unix(), Birth: testNow.Unix() - 86400,
			InodeNumber: uint64(1000 + i), ProtectionClass: it.Class}
		var content *bytes.Reader
		if it.Content != nil {
			content = bytes.NewReader(it.Content)
		}
		rec := backupfmt.Record{Domain: it.Domain, RelativePath: it.Path, File: f}
		if content != nil {
			require.NoError(t, w.Add(rec, content))
		} else {
			require.NoError(t, w.Add(rec, nil))
		}
	}
	require.NoError(t, w.Close())
	return dir
}

func kinds(r *Report) []string {
	var out []string
	for _, p := range r.Problems {
		out = append(out, string(p.Kind)+":"+p.Path)
	}
	sort.Strings(out)
	return out
}

func listFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	}))
	sort.Strings(out)
	return out
}
