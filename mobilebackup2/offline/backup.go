// Package offline works on backups with no phone attached: it opens every
// backup format a user may have (iOS 10+ Manifest.db, iOS 10.2+ encrypted,
// iOS 5–9 Manifest.mbdb), verifies, repairs, lists and extracts them, and
// summarises them.
//
// Facts: mobilebackup2-and-backup-format.md §4.4–§4.5 (Status, Snapshot),
// §5 (layout and metadata), §6 (encryption), §8 (pitfalls).
package offline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/keybag"
)

// Errors callers branch on. Wrong passwords wrap keybag.ErrWrongPassword.
var (
	// ErrNotBackup: the directory holds no backup (no Manifest.db/.mbdb).
	ErrNotBackup = errors.New("offline: not a backup directory")
	// ErrPasswordRequired: the backup is encrypted and no password was given.
	ErrPasswordRequired = errors.New("offline: backup is encrypted; a password is required")
	// ErrWrongPassword: the password does not unlock the backup keybag.
	ErrWrongPassword = keybag.ErrWrongPassword
)

// Format names the manifest format of a backup.
type Format string

// Backup formats.
const (
	FormatManifestDB Format = "Manifest.db"   // iOS 10+
	FormatMBDB       Format = "Manifest.mbdb" // iOS 5–9
)

// Names of the metadata files in a backup folder (format §5.1).
const (
	InfoPlist     = "Info.plist"
	StatusPlist   = "Status.plist"
	ManifestPlist = "Manifest.plist"
	ManifestDB    = "Manifest.db"
	ManifestMBDB  = "Manifest.mbdb"
	SnapshotDir   = "Snapshot"
)

// Options are common to the operations of this package.
type Options struct {
	// Password unlocks encrypted backups. Empty means none given.
	Password string
	// TempDir receives the decrypted copy of an encrypted Manifest.db
	// (removed on Close); "" uses os.TempDir.
	TempDir string
}

// Backup is an opened backup folder. The metadata files are parsed on
// Open; a damaged one leaves its field nil and its error set, so verify and
// repair can report it. Not safe for concurrent use except OpenContent.
type Backup struct {
	Dir    string // the <UDID> folder
	Format Format

	Info        *backupfmt.Info
	InfoErr     error
	Status      *backupfmt.Status
	StatusErr   error
	Manifest    *backupfmt.Manifest
	ManifestErr error

	// Encrypted is true when Manifest.plist says so or the Manifest.db is
	// not plain SQLite.
	Encrypted bool

	keys   *keybag.ClassKeys
	dbKey  []byte
	db     *backupfmt.ManifestDB
	dbTemp string
}

// isBackupDir reports whether dir looks like a <UDID> backup folder.
func isBackupDir(dir string) bool {
	for _, n := range []string{ManifestDB, ManifestMBDB, ManifestPlist, StatusPlist} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return true
		}
	}
	return false
}

// Resolve returns the backup folder for dir: dir itself when it holds
// backup metadata, else its only subfolder that does (so both
// "Backup/<UDID>" and "Backup" work). Symlinks are followed.
func Resolve(dir string) (string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("offline: %w", err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("%w: %s is not a directory", ErrNotBackup, dir)
	}
	if isBackupDir(dir) {
		return dir, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("offline: %w", err)
	}
	var found []string
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), ".") || !isDir(p) {
			continue
		}
		if isBackupDir(p) {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: %s", ErrNotBackup, dir)
	case 1:
		return found[0], nil
	}
	sort.Strings(found)
	return "", fmt.Errorf("%w: %s holds several backups (%s); name one", ErrNotBackup, dir, strings.Join(found, ", "))
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// sqliteMagic starts every plain SQLite database.
var sqliteMagic = []byte("SQLite format 3\x00")

func isPlainSQLite(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	hdr := make([]byte, len(sqliteMagic))
	_, err = io.ReadFull(f, hdr)
	return err == nil && bytes.Equal(hdr, sqliteMagic)
}

// Open opens the backup at dir (see Resolve). It fails with ErrNotBackup
// when there is no manifest, ErrPasswordRequired / ErrWrongPassword for
// encrypted backups (before anything is decrypted or written), and with a
// wrapped backupfmt error when the manifest cannot be read at all.
func Open(dir string, opts Options) (*Backup, error) {
	dir, err := Resolve(dir)
	if err != nil {
		return nil, err
	}
	b := &Backup{Dir: dir}
	b.Info, b.InfoErr = backupfmt.ReadInfo(filepath.Join(dir, InfoPlist))
	b.Status, b.StatusErr = backupfmt.ReadStatus(filepath.Join(dir, StatusPlist))
	b.Manifest, b.ManifestErr = backupfmt.ReadManifest(filepath.Join(dir, ManifestPlist))

	dbPath := filepath.Join(dir, ManifestDB)
	switch {
	case fileExists(dbPath):
		b.Format = FormatManifestDB
	case fileExists(filepath.Join(dir, ManifestMBDB)):
		b.Format = FormatMBDB
	default:
		return nil, fmt.Errorf("%w: %s has neither %s nor %s", ErrNotBackup, dir, ManifestDB, ManifestMBDB)
	}
	b.Encrypted = b.Manifest != nil && b.Manifest.IsEncrypted
	if b.Format == FormatManifestDB && !b.Encrypted && b.Manifest == nil && !isPlainSQLite(dbPath) {
		b.Encrypted = true // Manifest.plist lost, database is not plain SQLite
	}
	if b.Encrypted {
		if err := b.unlock(opts.Password); err != nil {
			return nil, err
		}
	}
	if b.Format == FormatManifestDB {
		if err := b.openDB(dbPath, opts.TempDir); err != nil {
			b.Close()
			return nil, err
		}
	}
	return b, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// unlock derives the class keys (format §6.2).
func (b *Backup) unlock(password string) error {
	if b.Manifest == nil || len(b.Manifest.BackupKeyBag) == 0 {
		return fmt.Errorf("offline: encrypted backup without a readable keybag in %s: %v", ManifestPlist, b.ManifestErr)
	}
	if password == "" {
		return ErrPasswordRequired
	}
	kb, err := keybag.Parse(b.Manifest.BackupKeyBag)
	if err != nil {
		return fmt.Errorf("offline: %s BackupKeyBag: %w", ManifestPlist, err)
	}
	keys, err := kb.Unlock(password)
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	b.keys = keys
	return nil
}

// openDB opens Manifest.db, decrypting it to a temporary file first when
// the backup is encrypted (format §6.3).
func (b *Backup) openDB(path, tempDir string) error {
	// iOS 10.0–10.1 encrypted files but not yet Manifest.db (format §6.3).
	plainDB := b.Encrypted && (b.Manifest == nil || len(b.Manifest.ManifestKey) == 0) && isPlainSQLite(path)
	if b.Encrypted && !plainDB {
		if b.Manifest == nil || len(b.Manifest.ManifestKey) == 0 {
			return fmt.Errorf("offline: encrypted %s without ManifestKey", ManifestDB)
		}
		key, err := b.keys.UnwrapKey(b.Manifest.ManifestKey)
		if err != nil {
			return fmt.Errorf("offline: ManifestKey: %w", err)
		}
		b.dbKey = key
		tmp, err := decryptToTemp(path, key, tempDir)
		if err != nil {
			return err
		}
		b.dbTemp = tmp
		path = tmp
	}
	db, err := backupfmt.OpenManifestDB(path)
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	b.db = db
	return nil
}

// decryptToTemp writes the plaintext of an encrypted file to a new
// temporary file and returns its path.
func decryptToTemp(path string, key []byte, tempDir string) (string, error) {
	in, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("offline: %w", err)
	}
	defer in.Close()
	out, err := os.CreateTemp(tempDir, "ibackup-manifest-*.db")
	if err != nil {
		return "", fmt.Errorf("offline: %w", err)
	}
	dr, err := keybag.NewDecryptReader(in, key)
	if err == nil {
		_, err = io.Copy(out, dr)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out.Name())
		return "", fmt.Errorf("offline: decrypt %s: %w", ManifestDB, err)
	}
	return out.Name(), nil
}

// Close releases the manifest and removes temporary files.
func (b *Backup) Close() error {
	var err error
	if b.db != nil {
		err = b.db.Close()
		b.db = nil
	}
	if b.dbTemp != "" {
		os.Remove(b.dbTemp)
		b.dbTemp = ""
	}
	return err
}

// Each calls fn for every manifest record in storage order, streaming.
// A damaged mbdb stops with an error wrapping backupfmt.ErrMalformed after
// the records before the damage were delivered.
func (b *Backup) Each(fn func(backupfmt.Record) error) error {
	if b.db != nil {
		return b.db.Each(fn)
	}
	f, err := os.Open(filepath.Join(b.Dir, ManifestMBDB))
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	defer f.Close()
	r, err := backupfmt.NewMBDBReader(f)
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("offline: %w", err)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}

// EachDomain is Each restricted to one domain ("" = all).
func (b *Backup) EachDomain(domain string, fn func(backupfmt.Record) error) error {
	if domain == "" {
		return b.Each(fn)
	}
	if b.db != nil {
		return b.db.EachDomain(domain, fn)
	}
	return b.Each(func(r backupfmt.Record) error {
		if r.Domain != domain {
			return nil
		}
		return fn(r)
	})
}

// ContentPath returns where the content of fileID is stored:
// <dir>/<xx>/<fileID> for Manifest.db backups, <dir>/<fileID> for mbdb
// (format §5.1, §5.7).
func (b *Backup) ContentPath(fileID string) string {
	return contentPath(b.Dir, b.Format, fileID)
}

func contentPath(dir string, f Format, fileID string) string {
	if f == FormatMBDB || len(fileID) < 2 {
		return filepath.Join(dir, fileID)
	}
	return filepath.Join(dir, fileID[:2], fileID)
}

// ErrNoFileKey: an encrypted backup's record carries no usable EncryptionKey.
var ErrNoFileKey = errors.New("offline: file has no usable encryption key")

// FileKey returns the AES key of an encrypted record (format §6.4).
func (b *Backup) FileKey(rec backupfmt.Record) ([]byte, error) {
	if rec.File == nil || len(rec.File.EncryptionKey) == 0 {
		return nil, ErrNoFileKey
	}
	k, err := b.keys.UnwrapKey(rec.File.EncryptionKey)
	if err != nil && len(rec.File.EncryptionKey) == keybag.WrappedKeyLen && rec.File.ProtectionClass > 0 {
		// The prefix may not name the class; fall back to ProtectionClass.
		if k2, err2 := b.keys.UnwrapKeyClass(uint32(rec.File.ProtectionClass), rec.File.EncryptionKey[4:]); err2 == nil {
			return k2, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoFileKey, err)
	}
	return k, nil
}

// OpenContent opens the plaintext of a regular file's content: the stored
// file itself, or a decrypting reader for encrypted backups. The plaintext
// is never cut to the recorded Size (format §6.4, real-device-profile.md).
func (b *Backup) OpenContent(rec backupfmt.Record) (io.ReadCloser, error) {
	f, err := os.Open(b.ContentPath(rec.FileID))
	if err != nil {
		return nil, fmt.Errorf("offline: %w", err)
	}
	if !b.Encrypted {
		return f, nil
	}
	key, err := b.FileKey(rec)
	if err != nil {
		f.Close()
		return nil, err
	}
	dr, err := keybag.NewDecryptReader(f, key)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("offline: %w", err)
	}
	return readCloser{dr, f}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}
