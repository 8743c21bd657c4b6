package backupagent

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
)

func TestCacheLookupAndEviction(t *testing.T) {
	c := NewCache()
	m := []byte("manifest")
	for _, u := range []string{"U1", "U2", "U3"} {
		c.store(newCacheEntry(u, "/d", m, time.Now(), nil))
	}
	sum := sha256.Sum256(m)
	for _, tc := range []struct {
		uuid, dir string
		sum       [32]byte
		found     bool
	}{
		{uuid: "U3", dir: "/d", sum: sum, found: true},
		{uuid: "U2", dir: "/d", sum: sum, found: true},
		{uuid: "U1", dir: "/d", sum: sum},                        // evicted: two entries are kept
		{uuid: "U3", dir: "/other", sum: sum},                    // another content tree
		{uuid: "U3", dir: "/d", sum: sha256.Sum256([]byte("x"))}, // the host's manifest differs
		{uuid: "", dir: "/d", sum: sum},
	} {
		assert.Equal(t, tc.found, c.lookup(tc.uuid, tc.dir, tc.sum) != nil, "%+v", tc)
	}
	var none *Cache
	assert.Nil(t, none.lookup("U3", "/d", sum))
	none.remember("U", "/d", m, time.Now(), nil) // a nil cache stores nothing
}

// TestCacheRowLimit: backups of more rows than the cache holds are not
// remembered, and older entries make room for a new one.
func TestCacheRowLimit(t *testing.T) {
	c := NewCache()
	c.maxRows = 3
	m := []byte("manifest")
	sum := sha256.Sum256(m)
	items := func(n int) []item {
		out := make([]item, n)
		for i := range out {
			out[i].rec.FileID = string(rune('a' + i))
		}
		return out
	}
	c.remember("big", "/d", m, time.Now(), items(4))
	assert.Nil(t, c.lookup("big", "/d", sum), "over the limit")
	c.remember("U1", "/d", m, time.Now(), items(2))
	c.remember("U2", "/d", m, time.Now(), items(1))
	assert.NotNil(t, c.lookup("U1", "/d", sum))
	assert.NotNil(t, c.lookup("U2", "/d", sum))
	c.remember("U3", "/d", m, time.Now(), items(2))
	assert.Nil(t, c.lookup("U1", "/d", sum), "dropped to make room")
	assert.NotNil(t, c.lookup("U2", "/d", sum))
	assert.NotNil(t, c.lookup("U3", "/d", sum))
}

// TestUnchangedReusesCachedDigest: the cached digest is reused only for an
// identical lstat identity whose ctime is clearly older than the previous
// scan; otherwise the file is read again and compared.
func TestUnchangedReusesCachedDigest(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "HomeDomain", "a.txt")
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte("hello"), 0o644))
	items, err := scan(dir)
	require.NoError(t, err)
	require.Len(t, items, 2)
	it := items[0]
	if it.rec.Type() != backupfmt.FlagFile {
		it = items[1]
	}
	real, err := sha1File(p)
	require.NoError(t, err)
	fake := bytes.Repeat([]byte{7}, 20) // what the cache claims: proves no re-read
	later := time.Now().Add(time.Hour)

	for _, tc := range []struct {
		name      string
		cached    bool
		scanned   time.Time
		st        statID
		noDigest  bool
		oldDigest []byte
		want      bool
		digest    []byte
	}{
		{name: "cache vouches", cached: true, scanned: later, st: it.st, oldDigest: fake, want: true, digest: fake},
		{name: "racy: changed around the last scan", cached: true, scanned: time.Now(), st: it.st, oldDigest: fake, digest: real},
		{name: "identity differs", cached: true, scanned: later, st: statID{size: it.st.size}, oldDigest: fake, digest: real},
		{name: "host manifest only", scanned: later, st: it.st, oldDigest: fake, digest: real},
		{name: "same digest read again", scanned: later, oldDigest: real, want: true, digest: real},
		{name: "no digests kept", cached: true, noDigest: true, oldDigest: fake, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := it
			f := *it.rec.File
			cur.rec.File = &f
			old := f
			old.Digest = tc.oldDigest
			a := &agent{cfg: Config{NoDigest: tc.noDigest}}
			prev := &previous{cached: tc.cached, scanned: tc.scanned}
			got := a.unchanged(&cur, &prevRow{file: &old, flags: cur.rec.Flags, st: tc.st}, prev)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.digest, cur.rec.File.Digest)
		})
	}
}
