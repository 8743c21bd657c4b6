package backupagent

import (
	"crypto/sha256"
	"slices"
	"sync"
	"time"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
)

// Cache is the phone's own record of its last backups: a real device keeps
// a per-backup cache keyed by the Status UUID and uses it when the host's
// files match it (mobilebackup2-and-backup-format.md §4.1; the host-side
// files stay authoritative). With it an incremental backup neither decodes
// the previous Manifest.db nor re-reads files whose lstat identity is
// unchanged. Share one Cache among all sessions of a phone; nil turns it
// off. Safe for concurrent use.
type Cache struct {
	maxRows int // cacheMaxRows; tests lower it

	mu      sync.Mutex
	entries []*cacheEntry // most recent last
}

// cacheEntries is how many backups (hosts) a Cache remembers.
const cacheEntries = 2

// cacheMaxRows bounds the rows a Cache holds (a row costs a few hundred
// bytes): the backup of a phone with more files is not remembered, and its
// next incremental backup reads the host's Manifest.db instead.
const cacheMaxRows = 300_000

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{maxRows: cacheMaxRows} }

// cacheEntry is what the phone remembers of one finished backup.
type cacheEntry struct {
	uuid     string   // Status.plist UUID of the backup
	dir      string   // content directory scanned
	manifest [32]byte // SHA-256 of the plain manifest file uploaded
	// scanned is the wall-clock time the scan started: a file whose ctime
	// is not clearly older was possibly changed while it was read, so its
	// digest is not reused (the "racy clean" rule).
	scanned time.Time
	rows    map[string]*prevRow
}

// prevRow is one row of the previous backup's manifest.
type prevRow struct {
	file  *backupfmt.MBFile // nil when the row did not decode
	flags int
	st    statID // lstat identity at that backup (cache only)
}

// racySlack is how much older than the previous scan a file's ctime must
// be for its cached digest to be trusted (file system clocks are coarse).
const racySlack = time.Second

// lookup returns the entry for a backup, only when its manifest is the one
// the host sent back (sum of the plain bytes).
func (c *Cache) lookup(uuid, dir string, sum [32]byte) *cacheEntry {
	if c == nil || uuid == "" {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		if e.uuid == uuid && e.dir == dir && e.manifest == sum {
			return e
		}
	}
	return nil
}

// store remembers a finished backup, dropping any older entry of the same
// UUID and the oldest ones beyond cacheEntries or cacheMaxRows.
func (c *Cache) store(e *cacheEntry) {
	if c == nil || len(e.rows) > c.maxRows {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := []*cacheEntry{e}
	rows := len(e.rows)
	for i := len(c.entries) - 1; i >= 0 && len(kept) < cacheEntries; i-- {
		o := c.entries[i]
		if o.uuid == e.uuid || rows+len(o.rows) > c.maxRows {
			continue
		}
		kept = append(kept, o)
		rows += len(o.rows)
	}
	slices.Reverse(kept) // most recent last
	c.entries = kept
}

// remember stores a finished backup: its Status UUID, the content tree it
// scanned (from the wall-clock time scanned on), its items and the plain
// manifest uploaded.
func (c *Cache) remember(uuid, dir string, manifest []byte, scanned time.Time, items []item) {
	if c == nil || len(items) > c.maxRows {
		return
	}
	c.store(newCacheEntry(uuid, dir, manifest, scanned, items))
}

// newCacheEntry builds the entry of a finished backup from its items.
func newCacheEntry(uuid, dir string, manifest []byte, scanned time.Time, items []item) *cacheEntry {
	rows := make(map[string]*prevRow, len(items))
	for i := range items {
		it := &items[i]
		rows[it.rec.FileID] = &prevRow{file: it.rec.File, flags: it.rec.Flags, st: it.st}
	}
	return &cacheEntry{uuid: uuid, dir: dir, manifest: sha256.Sum256(manifest), scanned: scanned, rows: rows}
}
