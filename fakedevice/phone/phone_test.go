package phone

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// treeDigest hashes every path, type and content under root.
func treeDigest(t *testing.T, root string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, path)
		h.Write([]byte(rel + "\x00" + d.Type().String() + "\x00"))
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			h.Write(b)
			info, err := d.Info()
			require.NoError(t, err)
			h.Write([]byte(info.ModTime().UTC().String()))
		}
		return nil
	})
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

func TestCreateDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	pa, err := Create(a, CreateOptions{Seed: 7, Files: 60, Size: 1 << 20})
	require.NoError(t, err)
	pb, err := Create(b, CreateOptions{Seed: 7, Files: 60, Size: 1 << 20})
	require.NoError(t, err)
	assert.Equal(t, pa.UDID(), pb.UDID())
	assert.Equal(t, treeDigest(t, pa.FilesDir()), treeDigest(t, pb.FilesDir()))

	pc, err := Create(a, CreateOptions{Seed: 8, Files: 60, Size: 1 << 20})
	require.NoError(t, err)
	assert.NotEqual(t, pa.UDID(), pc.UDID())

	_, err = Create(a, CreateOptions{Seed: 7})
	assert.ErrorContains(t, err, "already exists")
}

func TestCreateShape(t *testing.T) {
	dir := t.TempDir()
	p, err := Create(dir, CreateOptions{Seed: 1, Files: 120, Size: 2 << 20})
	require.NoError(t, err)
	assert.Regexp(t, `^00008110-[0-9A-F]{16}$`, p.UDID())
	assert.Equal(t, filepath.Join(dir, p.UDID()), p.Dir)

	s, err := p.Stats()
	require.NoError(t, err)
	assert.Equal(t, 120, s.Files)
	assert.Equal(t, 2, s.Symlinks)
	assert.GreaterOrEqual(t, s.Domains, 12)
	assert.InDelta(t, 2<<20, s.Bytes, float64(1<<20))

	db, err := os.ReadFile(filepath.Join(p.FilesDir(), "HomeDomain/Library/SMS/sms.db"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(db), "SQLite format 3\x00"))
	jpg, err := os.ReadFile(filepath.Join(p.FilesDir(), "CameraRollDomain/Media/DCIM/100APPLE/IMG_0001.JPG"))
	require.NoError(t, err)
	assert.Equal(t, []byte{0xFF, 0xD8}, jpg[:2])
	empty, err := os.Stat(filepath.Join(p.FilesDir(), "HomeDomain/Library/Cookies/Cookies.binarycookies"))
	require.NoError(t, err)
	assert.Zero(t, empty.Size())
	assert.DirExists(t, p.AFCDir())
}

func TestLoadAndList(t *testing.T) {
	dir := t.TempDir()
	ps, err := List(filepath.Join(dir, "missing"))
	require.NoError(t, err)
	assert.Empty(t, ps)

	p1, err := Create(dir, CreateOptions{Seed: 1, Files: 5, Profile: "ios9"})
	require.NoError(t, err)
	assert.Len(t, p1.UDID(), 40, "pre-A12 models use the 40-hex UDID")
	p2, err := Create(dir, CreateOptions{Seed: 2, Files: 5, Profile: "26"})
	require.NoError(t, err)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "not-a-phone"), 0o755))

	p2.Config.WillEncrypt = true
	p2.Config.BackupPassword = "pw"
	p2.Config.Faults = []string{"deny-trust"}
	require.NoError(t, p2.Save())

	ps, err = List(dir)
	require.NoError(t, err)
	require.Len(t, ps, 2)
	byUDID := map[string]*Phone{ps[0].UDID(): ps[0], ps[1].UDID(): ps[1]}
	got := byUDID[p2.UDID()]
	require.NotNil(t, got)
	assert.True(t, got.Config.WillEncrypt)
	assert.Equal(t, "pw", got.Config.BackupPassword)
	assert.Equal(t, []string{"deny-trust"}, got.Config.Faults)
	assert.Equal(t, "ios26", got.Config.Profile)
	assert.Equal(t, "ios9", byUDID[p1.UDID()].Config.Profile)

	v, err := got.Values()
	require.NoError(t, err)
	assert.Equal(t, got.UDID(), v["UniqueDeviceID"])
	assert.Equal(t, "26.1", v["ProductVersion"])

	_, err = Load(filepath.Join(dir, "not-a-phone"))
	assert.ErrorIs(t, err, ErrNotPhone)
}

func TestFromTree(t *testing.T) {
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "a/b"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "a/b/c.txt"), []byte("hello"), 0o644))
	p, err := Create(t.TempDir(), CreateOptions{FromTree: src})
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(p.FilesDir(), "HomeDomain/a/b/c.txt"))
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))

	src2 := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src2, "AppDomain-com.x/Documents"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src2, "AppDomain-com.x/Documents/d"), []byte("x"), 0o600))
	p2, err := Create(t.TempDir(), CreateOptions{FromTree: src2, Seed: 3})
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(p2.FilesDir(), "AppDomain-com.x/Documents/d"))
}

// FuzzLoad: any device.plist gives a phone or an error, never a panic.
func FuzzLoad(f *testing.F) {
	dir := f.TempDir()
	p, err := Create(dir, CreateOptions{Files: 1, Size: 1})
	require.NoError(f, err)
	good, err := os.ReadFile(p.ConfigPath())
	require.NoError(f, err)
	f.Add(good)
	f.Add([]byte("bplist00"))
	f.Add([]byte(`<plist><dict><key>Profile</key><string>ios99</string></dict></plist>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(d, ConfigFile), b, 0o644))
		_, _ = Load(d)
	})
}
