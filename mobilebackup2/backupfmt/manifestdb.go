package backupfmt

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // pure-Go SQLite driver "sqlite"
)

// ErrNotManifestDB is returned by OpenManifestDB for a file that is not an
// SQLite database with a Files table (for example an encrypted Manifest.db
// opened without decrypting it first).
var ErrNotManifestDB = errors.New("backupfmt: not a Manifest.db")

// Record is one Files row of Manifest.db (or one Manifest.mbdb record).
type Record struct {
	FileID       string
	Domain       string
	RelativePath string
	Flags        int     // Files.flags: 1 file, 2 directory, 4 symlink (test Flags&FlagsTypeMask)
	File         *MBFile // decoded Files.file; nil when absent or undecodable
	// FileErr is set when the row's file blob is missing or did not decode.
	// Readers report it per row instead of stopping the whole walk.
	FileErr error
}

// Type returns Flags&FlagsTypeMask.
func (r *Record) Type() int { return r.Flags & FlagsTypeMask }

// schema is the iOS 10+ Manifest.db schema (format §5.5, real-device-profile.md).
var schema = []string{
	`PRAGMA page_size = 4096`,
	`PRAGMA auto_vacuum = INCREMENTAL`,
	`PRAGMA journal_mode = WAL`,
	`PRAGMA synchronous = OFF`, // the file is fsynced once before the rename in Close
	`PRAGMA user_version = 2`,
	`CREATE TABLE Files (fileID TEXT PRIMARY KEY, domain TEXT, relativePath TEXT, flags INTEGER, file BLOB)`,
	`CREATE INDEX FilesDomainIdx ON Files(domain)`,
	`CREATE INDEX FilesRelativePathIdx ON Files(relativePath)`,
	`CREATE INDEX FilesFlagsIdx ON Files(flags)`,
	`CREATE TABLE Properties (key TEXT PRIMARY KEY, value BLOB)`,
}

// writeBatch is how many rows one write transaction holds.
const writeBatch = 4096

// ManifestWriter builds a new Manifest.db (CreateManifestDB) or changes an
// existing one (UpdateManifestDB). A new database is written to a temporary
// file beside the destination and renamed into place on Close, so readers
// never see a half-written database. Not safe for concurrent use.
type ManifestWriter struct {
	path, tmp string // tmp == path when updating in place
	db        *sql.DB
	tx        *sql.Tx
	ins, del  *sql.Stmt
	pending   int
	closed    bool
}

// CreateManifestDB starts a new Manifest.db at path with the iOS 10+ schema
// (page_size 4096, user_version 2, incremental auto_vacuum, WAL journal,
// Files + Properties tables and the three Files indexes). An existing file at
// path is replaced when Close succeeds.
func CreateManifestDB(path string) (*ManifestWriter, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("backupfmt: create Manifest.db: %w", err)
	}
	tmp := f.Name()
	f.Close()
	w := &ManifestWriter{path: path, tmp: tmp}
	db, err := sql.Open("sqlite", sqliteURI(tmp, ""))
	if err != nil {
		w.cleanup()
		return nil, fmt.Errorf("backupfmt: create Manifest.db: %w", err)
	}
	db.SetMaxOpenConns(1)
	w.db = db
	for _, q := range schema {
		if _, err := db.Exec(q); err != nil {
			w.Abort()
			return nil, fmt.Errorf("backupfmt: create Manifest.db: %s: %w", q, err)
		}
	}
	return w, nil
}

// UpdateManifestDB opens the existing Manifest.db at path to add, replace
// and delete rows in place (an incremental backup changes only some rows of
// the previous manifest). Rows are committed in batches; Close checkpoints
// the WAL so no -wal/-shm file remains. Abort rolls back the open batch and
// never removes path.
func UpdateManifestDB(path string) (*ManifestWriter, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("backupfmt: update Manifest.db: %w", err)
	}
	db, err := sql.Open("sqlite", sqliteURI(path, ""))
	if err != nil {
		return nil, fmt.Errorf("backupfmt: update Manifest.db: %w", err)
	}
	db.SetMaxOpenConns(1)
	return &ManifestWriter{path: path, tmp: path, db: db}, nil
}

// sqliteURI builds a file: URI for path with the given query.
func sqliteURI(path, query string) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: query}
	return u.String()
}

func (w *ManifestWriter) begin() error {
	if w.tx != nil {
		return nil
	}
	tx, err := w.db.Begin()
	if err != nil {
		return err
	}
	ins, err := tx.Prepare(`INSERT OR REPLACE INTO Files (fileID, domain, relativePath, flags, file) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		tx.Rollback()
		return err
	}
	del, err := tx.Prepare(`DELETE FROM Files WHERE fileID = ?`)
	if err != nil {
		ins.Close()
		tx.Rollback()
		return err
	}
	w.tx, w.ins, w.del = tx, ins, del
	return nil
}

// closeStmts releases the open batch's statements.
func (w *ManifestWriter) closeStmts() {
	w.ins.Close()
	w.del.Close()
}

func (w *ManifestWriter) commit() error {
	if w.tx == nil {
		return nil
	}
	w.closeStmts()
	err := w.tx.Commit()
	w.tx, w.ins, w.del, w.pending = nil, nil, nil, 0
	return err
}

// Add inserts (or replaces) one row. An empty FileID is computed from
// Domain and RelativePath, zero Flags from File.Mode. A nil File stores a
// NULL blob (only useful to craft damaged manifests in tests).
func (w *ManifestWriter) Add(r Record) error {
	if w.closed {
		return fmt.Errorf("backupfmt: Manifest.db writer closed")
	}
	if r.FileID == "" {
		r.FileID = FileID(r.Domain, r.RelativePath)
	}
	var blob []byte
	if r.File != nil {
		if r.Flags == 0 {
			r.Flags = r.File.Type()
		}
		var err error
		if blob, err = EncodeMBFile(r.File); err != nil {
			return err
		}
	}
	if err := w.begin(); err != nil {
		return fmt.Errorf("backupfmt: Manifest.db: %w", err)
	}
	if _, err := w.ins.Exec(r.FileID, r.Domain, r.RelativePath, r.Flags, blob); err != nil {
		return fmt.Errorf("backupfmt: Manifest.db insert %s: %w", r.FileID, err)
	}
	return w.counted()
}

// Delete removes the row of fileID; a missing row is not an error.
func (w *ManifestWriter) Delete(fileID string) error {
	if w.closed {
		return fmt.Errorf("backupfmt: Manifest.db writer closed")
	}
	if err := w.begin(); err != nil {
		return fmt.Errorf("backupfmt: Manifest.db: %w", err)
	}
	if _, err := w.del.Exec(fileID); err != nil {
		return fmt.Errorf("backupfmt: Manifest.db delete %s: %w", fileID, err)
	}
	return w.counted()
}

// counted commits the batch once it holds writeBatch changes.
func (w *ManifestWriter) counted() error {
	if w.pending++; w.pending >= writeBatch {
		if err := w.commit(); err != nil {
			return fmt.Errorf("backupfmt: Manifest.db: %w", err)
		}
	}
	return nil
}

// SetProperty stores one Properties row (iOS 26 keeps passwordHash and salt
// there for encrypted backups, format §5.5).
func (w *ManifestWriter) SetProperty(key string, value []byte) error {
	if w.closed {
		return fmt.Errorf("backupfmt: Manifest.db writer closed")
	}
	if err := w.begin(); err != nil {
		return fmt.Errorf("backupfmt: Manifest.db: %w", err)
	}
	if _, err := w.tx.Exec(`INSERT OR REPLACE INTO Properties (key, value) VALUES (?, ?)`, key, value); err != nil {
		return fmt.Errorf("backupfmt: Manifest.db property %q: %w", key, err)
	}
	return nil
}

// Close commits, checkpoints the WAL (so no -wal/-shm file remains, as on a
// device, format §5.1) and renames the database into place.
func (w *ManifestWriter) Close() error {
	if w.closed {
		return nil
	}
	err := w.commit()
	if err == nil {
		_, err = w.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	}
	if cerr := w.db.Close(); err == nil {
		err = cerr
	}
	w.closed = true
	if err == nil {
		err = syncFile(w.tmp)
	}
	if err == nil && w.tmp != w.path {
		err = os.Rename(w.tmp, w.path)
	}
	if err != nil {
		w.cleanup()
		return fmt.Errorf("backupfmt: close Manifest.db: %w", err)
	}
	return nil
}

// syncFile flushes a file to stable storage.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Abort discards the database being written.
func (w *ManifestWriter) Abort() {
	if w.closed {
		return
	}
	w.closed = true
	if w.tx != nil {
		w.closeStmts()
		w.tx.Rollback()
	}
	if w.db != nil {
		w.db.Close()
	}
	w.cleanup()
}

func (w *ManifestWriter) cleanup() {
	if w.tmp == w.path {
		return // updating in place: the database is the caller's
	}
	for _, s := range []string{"", "-wal", "-shm", "-journal"} {
		os.Remove(w.tmp + s)
	}
}

// ManifestDB is a read-only Manifest.db. Safe for concurrent use.
type ManifestDB struct {
	db *sql.DB
}

// OpenManifestDB opens a plain (decrypted) Manifest.db read-only. It uses
// SQLite's immutable mode, so nothing is written next to the user's file: no
// -wal, -shm or -journal appears even for a WAL-mode database.
func OpenManifestDB(path string) (*ManifestDB, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("backupfmt: open Manifest.db: %w", err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%w: %s is a directory", ErrNotManifestDB, path)
	}
	if st.Size() == 0 {
		return nil, fmt.Errorf("backupfmt: open Manifest.db: %w", ErrEmpty)
	}
	db, err := sql.Open("sqlite", sqliteURI(path, "mode=ro&immutable=1"))
	if err != nil {
		return nil, fmt.Errorf("backupfmt: open Manifest.db: %w", err)
	}
	db.SetMaxOpenConns(2)
	var n int
	err = db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'Files'`).Scan(&n)
	if err == nil && n == 0 {
		err = errors.New("no Files table")
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrNotManifestDB, path, err)
	}
	return &ManifestDB{db: db}, nil
}

// Close releases the database.
func (m *ManifestDB) Close() error {
	if err := m.db.Close(); err != nil {
		return fmt.Errorf("backupfmt: close Manifest.db: %w", err)
	}
	return nil
}

const selectFiles = `SELECT fileID, domain, relativePath, flags, file FROM Files`

// scanRecord reads one row; a bad blob goes to Record.FileErr.
func scanRecord(sc interface{ Scan(...any) error }) (Record, error) {
	var (
		id, dom, rel sql.NullString
		flags        sql.NullInt64
		blob         []byte
	)
	if err := sc.Scan(&id, &dom, &rel, &flags, &blob); err != nil {
		return Record{}, err
	}
	r := Record{FileID: id.String, Domain: dom.String, RelativePath: rel.String, Flags: int(flags.Int64)}
	if blob == nil {
		r.FileErr = fmt.Errorf("%w: row %s has no file blob", ErrMalformed, r.FileID)
	} else if f, err := DecodeMBFile(blob); err != nil {
		r.FileErr = err
	} else {
		r.File = f
	}
	return r, nil
}

// Each calls fn for every Files row in storage order, streaming: only the
// current row is held in memory. It stops at the first error from fn and
// returns it unwrapped.
func (m *ManifestDB) Each(fn func(Record) error) error {
	return m.each(context.Background(), selectFiles, nil, fn)
}

// EachDomain is Each restricted to one domain (uses the domain index).
func (m *ManifestDB) EachDomain(domain string, fn func(Record) error) error {
	return m.each(context.Background(), selectFiles+` WHERE domain = ?`, []any{domain}, fn)
}

func (m *ManifestDB) each(ctx context.Context, q string, args []any, fn func(Record) error) error {
	rows, err := m.db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("backupfmt: Manifest.db query: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return fmt.Errorf("backupfmt: Manifest.db row: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("backupfmt: Manifest.db rows: %w", err)
	}
	return nil
}

// Lookup returns the row with the given fileID, or ErrNotFound.
func (m *ManifestDB) Lookup(fileID string) (Record, error) {
	r, err := scanRecord(m.db.QueryRow(selectFiles+` WHERE fileID = ?`, fileID))
	if errors.Is(err, sql.ErrNoRows) {
		return Record{}, fmt.Errorf("%w: fileID %s", ErrNotFound, fileID)
	}
	if err != nil {
		return Record{}, fmt.Errorf("backupfmt: Manifest.db lookup: %w", err)
	}
	return r, nil
}

// Count returns the number of Files rows.
func (m *ManifestDB) Count() (int64, error) {
	var n int64
	if err := m.db.QueryRow(`SELECT count(*) FROM Files`).Scan(&n); err != nil {
		return 0, fmt.Errorf("backupfmt: Manifest.db count: %w", err)
	}
	return n, nil
}

// Properties returns the Properties table.
func (m *ManifestDB) Properties() (map[string][]byte, error) {
	rows, err := m.db.Query(`SELECT key, value FROM Properties`)
	if err != nil {
		return nil, fmt.Errorf("backupfmt: Manifest.db properties: %w", err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var k sql.NullString
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("backupfmt: Manifest.db properties: %w", err)
		}
		out[k.String] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("backupfmt: Manifest.db properties: %w", err)
	}
	return out, nil
}
