package backupagent

// The previous backup as the phone sees it at the start of an incremental
// one (mobilebackup2-and-backup-format.md §4.1, §4.2): the host's
// Manifest.plist and manifest, and the phone's own cache of that backup
// when it matches them.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
)

// previous is what the phone knows of the backup it continues.
type previous struct {
	rows map[string]*prevRow // fileID → row of the previous manifest
	// cached: rows come from the phone's own cache (statID valid, scanned
	// set), so unchanged files need not be read again.
	cached  bool
	scanned time.Time
	// dbPath is the previous plain Manifest.db on disk, the base of the new
	// one ("" for the mbdb format).
	dbPath string
}

// hostManifestDB is the WorkDir file holding the previous Manifest.db.
const hostManifestDB = "host-Manifest.db"

// loadPrevious turns the plain bytes of the host's manifest into the
// previous state, from the phone's cache when it matches them (§4.1).
func (a *agent) loadPrevious(uuid string, b []byte) (*previous, error) {
	if len(b) == 0 {
		return nil, errors.New("backupagent: no " + a.manifestName())
	}
	if !isMBDB(b) {
		path := filepath.Join(a.cfg.WorkDir, hostManifestDB)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, fmt.Errorf("backupagent: %w", err)
		}
		return a.loadPreviousFile(uuid, path, sha256.Sum256(b))
	}
	if e := a.cfg.Cache.lookup(uuid, a.cfg.ContentDir, sha256.Sum256(b)); e != nil {
		return &previous{rows: e.rows, cached: true, scanned: e.scanned}, nil
	}
	rows, err := decodeMBDB(b)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*prevRow, len(rows))
	for _, r := range rows {
		out[r.FileID] = &prevRow{file: r.File, flags: r.Flags}
	}
	return &previous{rows: out}, nil
}

// loadPreviousFile is loadPrevious for a Manifest.db already in a file;
// sum is the SHA-256 of its bytes.
func (a *agent) loadPreviousFile(uuid, path string, sum [32]byte) (*previous, error) {
	p := &previous{dbPath: path}
	if e := a.cfg.Cache.lookup(uuid, a.cfg.ContentDir, sum); e != nil {
		p.rows, p.cached, p.scanned = e.rows, true, e.scanned
		return p, nil
	}
	rows, err := readManifestDB(path)
	if err != nil {
		p.remove()
		return nil, err
	}
	p.rows = rows
	return p, nil
}

// gone returns the fileIDs of previous rows that are not among items;
// found is how many items have a previous row.
func (p *previous) gone(items []item, found int) []string {
	if p == nil || found == len(p.rows) {
		return nil
	}
	present := make(map[string]struct{}, len(items))
	for i := range items {
		present[items[i].rec.FileID] = struct{}{}
	}
	var out []string
	for id := range p.rows {
		if _, ok := present[id]; !ok {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// remove deletes the on-disk copy of the previous manifest.
func (p *previous) remove() {
	if p != nil && p.dbPath != "" {
		removeDB(p.dbPath)
	}
}

// removeDB deletes an SQLite database and its side files.
func removeDB(path string) {
	for _, s := range []string{"", "-wal", "-shm", "-journal"} {
		os.Remove(path + s)
	}
}

// readManifestDB decodes every row of the Manifest.db at path. Rows that
// do not decode are kept with a nil file.
func readManifestDB(path string) (map[string]*prevRow, error) {
	db, err := backupfmt.OpenManifestDB(path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	out := map[string]*prevRow{}
	err = db.Each(func(r backupfmt.Record) error {
		out[r.FileID] = &prevRow{file: r.File, flags: r.Flags}
		return nil
	})
	return out, err
}

// errZeroManifest: the host sent an empty Manifest.plist (pitfall 5).
var errZeroManifest = errors.New("backupagent: zero-length Manifest.plist")

// previousBackup downloads the previous backup's Manifest.plist and
// manifest (§4.2 step 2) and returns what the phone knows of it, or nil
// when the next backup must be full: no usable manifest, or a changed
// password or encryption setting ("Password has changed. Performing full
// backup…", §6.5). A plain Manifest.db streams into a file, summed on the
// way; an encrypted one is decrypted in memory first.
func (a *agent) previousBackup(u, uuid string, cr *cryptor) (*previous, error) {
	mfName, dbName := u+"/Manifest.plist", u+"/"+a.manifestName()
	mf := &chunkBuffer{limit: maxDownload}
	var (
		file *fileSink
		mem  *chunkBuffer
		sink downloadSink
	)
	if !a.cfg.MBDB && (cr == nil || !cr.manifest) {
		var err error
		if file, err = newFileSink(filepath.Join(a.cfg.WorkDir, hostManifestDB)); err != nil {
			return nil, err
		}
		sink = file
	} else {
		mem = &chunkBuffer{limit: maxDownload}
		sink = mem
	}
	err := a.downloadTo(func(name string) downloadSink {
		switch name {
		case mfName:
			return mf
		case dbName:
			return sink
		}
		return discardSink{}
	}, mfName, dbName)
	whole := file != nil && file.close()
	oldMF, perr := backupfmt.ParseManifest(mf.Bytes())
	if err != nil || (mf.ok && mf.n == 0) || perr != nil || !mf.ok || !sameEncryption(oldMF, cr) || (file != nil && !whole) {
		if file != nil {
			removeDB(filepath.Join(a.cfg.WorkDir, hostManifestDB))
		}
		switch {
		case err != nil:
			return nil, err
		case mf.ok && mf.n == 0:
			return nil, errZeroManifest
		}
		return nil, nil
	}
	var p *previous
	if file != nil {
		p, err = a.loadPreviousFile(uuid, filepath.Join(a.cfg.WorkDir, hostManifestDB), file.sha256())
	} else {
		if !mem.ok {
			return nil, nil
		}
		db := mem.Bytes()
		if cr != nil {
			if db, err = cr.decryptDB(db, oldMF.ManifestKey); err != nil {
				return nil, nil
			}
		}
		p, err = a.loadPrevious(uuid, db)
	}
	if err != nil {
		return nil, nil // unreadable: a full backup replaces it
	}
	return p, nil
}

// unchanged reports whether content file it can be left out of an
// incremental backup: same type, size, mtime and inode as its previous row
// and, when digests are kept, the same content. The content is read again
// only when the phone's cache cannot vouch for it: a cached lstat identity
// equal to nanoseconds and a ctime clearly older than the scan that hashed
// it (the racy-clean rule) reuse the cached digest.
func (a *agent) unchanged(it *item, o *prevRow, prev *previous) bool {
	f := it.rec.File
	if o == nil || o.file == nil || o.file.Type() != f.Type() || o.file.Size != f.Size ||
		o.file.LastModified != f.LastModified || o.file.InodeNumber != f.InodeNumber {
		return false
	}
	if a.cfg.NoDigest {
		return true
	}
	if prev.cached && o.st == it.st && len(o.file.Digest) > 0 &&
		it.st.ctime < prev.scanned.Add(-racySlack).UnixNano() {
		f.Digest = o.file.Digest
		return true
	}
	d, err := sha1File(it.path)
	if err != nil {
		return false // unreadable now: the upload reports it (CODE_ERROR_REMOTE)
	}
	f.Digest = d
	return len(o.file.Digest) == 0 || bytes.Equal(d, o.file.Digest)
}
