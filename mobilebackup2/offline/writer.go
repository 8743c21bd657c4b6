package offline

import (
	"crypto/rand"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/keybag"
)

// WriterConfig describes a backup folder to write. Zero values give a plain
// iOS 10+ backup with device-like defaults.
type WriterConfig struct {
	Format Format // default FormatManifestDB

	// Info is written as Info.plist when non-nil.
	Info *backupfmt.Info
	// Manifest is the Manifest.plist template (Lockdown, Applications,
	// versions). IsEncrypted, BackupKeyBag and ManifestKey are filled in.
	Manifest backupfmt.Manifest
	// Status is the Status.plist template; empty fields get "3.3"/"2.4",
	// new, finished and a fresh UUID.
	Status backupfmt.Status

	// Password encrypts the backup with a new keybag (KeybagOptions sets
	// the iteration counts; keep them small in tests).
	Password      string
	KeybagOptions keybag.NewOptions
	// Keybag/Keys/ManifestDBKey reuse an existing encryption (repair);
	// they take precedence over Password.
	Keybag        []byte
	Keys          *keybag.ClassKeys
	ManifestDBKey []byte

	// Digests stores SHA-1 of the plaintext in MBFile.Digest.
	Digests bool
	// Now stamps Status/Manifest dates; default time.Now.
	Now func() time.Time
	// Rand supplies keys and UUIDs; default crypto/rand.
	Rand io.Reader
}

// Writer writes a complete backup folder: content files in the layout of
// its format, the manifest (streamed, bounded memory), Manifest.plist,
// Status.plist and Info.plist. Not safe for concurrent use.
type Writer struct {
	dir    string
	cfg    WriterConfig
	db     *backupfmt.ManifestWriter
	dbPath string
	mbdbF  *os.File
	mbdb   *backupfmt.MBDBWriter
	keys   *keybag.ClassKeys
	kbRaw  []byte
	dbKey  []byte
	closed bool
}

// NewWriter creates dir (which must not exist or be empty) and starts a
// backup in it.
func NewWriter(dir string, cfg WriterConfig) (*Writer, error) {
	if cfg.Format == "" {
		cfg.Format = FormatManifestDB
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if err := ensureEmptyDir(dir); err != nil {
		return nil, err
	}
	w := &Writer{dir: dir, cfg: cfg}
	switch {
	case cfg.Keys != nil:
		w.keys, w.kbRaw, w.dbKey = cfg.Keys, cfg.Keybag, cfg.ManifestDBKey
	case cfg.Password != "":
		opts := cfg.KeybagOptions
		if opts.Rand == nil {
			opts.Rand = cfg.Rand
		}
		kb, keys, err := keybag.New(cfg.Password, opts)
		if err != nil {
			return nil, fmt.Errorf("offline: %w", err)
		}
		w.keys, w.kbRaw = keys, kb.Marshal()
	}
	if w.keys != nil && w.dbKey == nil && cfg.Format == FormatManifestDB {
		w.dbKey = make([]byte, 32)
		if _, err := io.ReadFull(cfg.Rand, w.dbKey); err != nil {
			return nil, fmt.Errorf("offline: random: %w", err)
		}
	}
	switch cfg.Format {
	case FormatManifestDB:
		for i := 0; i < 256; i++ { // format §5.1: created even when empty
			if err := os.Mkdir(filepath.Join(dir, fmt.Sprintf("%02x", i)), 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return nil, fmt.Errorf("offline: %w", err)
			}
		}
		w.dbPath = filepath.Join(dir, ManifestDB)
		if w.keys != nil {
			w.dbPath = filepath.Join(dir, ".Manifest.db.plain")
		}
		db, err := backupfmt.CreateManifestDB(w.dbPath)
		if err != nil {
			return nil, fmt.Errorf("offline: %w", err)
		}
		w.db = db
	case FormatMBDB:
		f, err := os.Create(filepath.Join(dir, ManifestMBDB))
		if err != nil {
			return nil, fmt.Errorf("offline: %w", err)
		}
		w.mbdbF = f
		if w.mbdb, err = backupfmt.NewMBDBWriter(f); err != nil {
			f.Close()
			return nil, err
		}
	default:
		return nil, fmt.Errorf("offline: unknown format %q", cfg.Format)
	}
	return w, nil
}

// ensureEmptyDir creates dir, or accepts an existing empty one.
func ensureEmptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("offline: %s is not empty", dir)
	}
	return nil
}

func (w *Writer) addRecord(rec backupfmt.Record) error {
	if w.db != nil {
		return w.db.Add(rec)
	}
	return w.mbdb.Add(rec)
}

// Add writes one record. For regular files content is the plaintext: it is
// stored (encrypted with a fresh per-file key when the backup is
// encrypted), and Size (and Digest with cfg.Digests) are set from it.
// Directories and symlinks take no content. rec.File is required.
func (w *Writer) Add(rec backupfmt.Record, content io.Reader) error {
	if w.closed {
		return errors.New("offline: writer closed")
	}
	if rec.File == nil {
		return errors.New("offline: record without MBFile")
	}
	f := *rec.File
	rec.File = &f
	if f.RelativePath == "" {
		f.RelativePath = rec.RelativePath
	}
	if rec.FileID == "" {
		rec.FileID = backupfmt.FileID(rec.Domain, rec.RelativePath)
	}
	if rec.Flags == 0 {
		rec.Flags = f.Type()
	}
	if rec.Flags&backupfmt.FlagsTypeMask == backupfmt.FlagFile {
		if content == nil {
			return fmt.Errorf("offline: %s/%s: regular file without content", rec.Domain, rec.RelativePath)
		}
		if err := w.storeContent(&rec, content); err != nil {
			return err
		}
	}
	return w.addRecord(rec)
}

// storeContent writes a regular file's content and fills Size, Digest and
// EncryptionKey.
func (w *Writer) storeContent(rec *backupfmt.Record, content io.Reader) error {
	path := contentPath(w.dir, w.cfg.Format, rec.FileID)
	out, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	var dst io.Writer = out
	var enc io.WriteCloser
	if w.keys != nil {
		key := make([]byte, 32)
		if _, err := io.ReadFull(w.cfg.Rand, key); err != nil {
			out.Close()
			return fmt.Errorf("offline: random: %w", err)
		}
		class := uint32(rec.File.ProtectionClass)
		if !w.keys.Has(class) {
			class = keybag.ClassNone
		}
		wrapped, err := w.keys.WrapKey(class, key)
		if err != nil {
			out.Close()
			return fmt.Errorf("offline: %w", err)
		}
		rec.File.EncryptionKey = wrapped
		if enc, err = keybag.NewEncryptWriter(out, key); err != nil {
			out.Close()
			return fmt.Errorf("offline: %w", err)
		}
		dst = enc
	}
	h := sha1.New()
	n, err := io.Copy(io.MultiWriter(dst, h), content)
	if err == nil && enc != nil {
		err = enc.Close()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("offline: write %s: %w", rec.FileID, err)
	}
	rec.File.Size = n
	if w.cfg.Digests {
		rec.File.Digest = h.Sum(nil)
	}
	return nil
}

// AddStored writes a record whose stored bytes are copied verbatim from
// stored (already encrypted for encrypted backups; rec.File keeps its
// EncryptionKey and Size). Used by repair to keep content untouched.
func (w *Writer) AddStored(rec backupfmt.Record, stored io.Reader) error {
	if w.closed {
		return errors.New("offline: writer closed")
	}
	if stored != nil {
		out, err := os.Create(contentPath(w.dir, w.cfg.Format, rec.FileID))
		if err != nil {
			return fmt.Errorf("offline: %w", err)
		}
		_, err = io.Copy(out, stored)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("offline: copy %s: %w", rec.FileID, err)
		}
	}
	return w.addRecord(rec)
}

// Abort stops writing; the partial folder stays for the caller to remove.
func (w *Writer) Abort() {
	if w.closed {
		return
	}
	w.closed = true
	if w.db != nil {
		w.db.Abort()
	}
	if w.mbdbF != nil {
		w.mbdbF.Close()
	}
}

// Close finishes the manifest (encrypting Manifest.db when needed) and
// writes Manifest.plist, Status.plist and Info.plist, in that order, so a
// folder with a Status.plist is complete.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	now := w.cfg.Now().UTC().Truncate(time.Second)
	m := w.cfg.Manifest
	if w.db != nil {
		if err := w.db.Close(); err != nil {
			return fmt.Errorf("offline: %w", err)
		}
		if m.Version == "" {
			m.Version = backupfmt.ManifestVersionDB
		}
	} else {
		err := w.mbdb.Flush()
		if cerr := w.mbdbF.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if m.Version == "" {
			m.Version = backupfmt.ManifestVersionMBDB
		}
	}
	if m.SystemDomainsVersion == "" {
		m.SystemDomainsVersion = "24.0"
	}
	if m.Date.IsZero() {
		m.Date = now
	}
	m.IsEncrypted = w.keys != nil
	m.ManifestKey = nil
	if w.keys != nil {
		m.BackupKeyBag = w.kbRaw
		if w.db != nil {
			if err := w.encryptDB(); err != nil {
				return err
			}
			mk, err := w.keys.WrapKey(keybag.ClassNone, w.dbKey)
			if err != nil {
				return fmt.Errorf("offline: ManifestKey: %w", err)
			}
			m.ManifestKey = mk
		}
	} else if m.BackupKeyBag == nil {
		kb, err := plainKeybag(w.cfg.Rand)
		if err != nil {
			return err
		}
		m.BackupKeyBag = kb
	}
	if err := backupfmt.WriteManifest(filepath.Join(w.dir, ManifestPlist), &m); err != nil {
		return err
	}
	s := w.cfg.Status
	if s.Version == "" {
		s.Version = backupfmt.StatusVersion
		if w.cfg.Format == FormatMBDB {
			s.Version = "2.4"
		}
	}
	if s.BackupState == "" {
		s.BackupState = backupfmt.BackupStateNew
	}
	if s.SnapshotState == "" {
		s.SnapshotState = backupfmt.SnapshotFinished
	}
	if s.UUID == "" {
		s.UUID = newUUID(w.cfg.Rand)
	}
	if s.Date.IsZero() {
		s.Date = now
	}
	if err := backupfmt.WriteStatus(filepath.Join(w.dir, StatusPlist), &s); err != nil {
		return err
	}
	if w.cfg.Info != nil {
		if err := backupfmt.WriteInfo(filepath.Join(w.dir, InfoPlist), w.cfg.Info); err != nil {
			return err
		}
	}
	return nil
}

// encryptDB encrypts the plain database into Manifest.db (format §6.3).
func (w *Writer) encryptDB() error {
	defer os.Remove(w.dbPath)
	in, err := os.Open(w.dbPath)
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	defer in.Close()
	out, err := os.Create(filepath.Join(w.dir, ManifestDB))
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	enc, err := keybag.NewEncryptWriter(out, w.dbKey)
	if err == nil {
		_, err = io.Copy(enc, in)
	}
	if err == nil {
		err = enc.Close()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("offline: encrypt %s: %w", ManifestDB, err)
	}
	return nil
}

// plainKeybag builds the keybag an unencrypted backup still carries
// (format §5.4): a backup keybag protected by a random secret nobody knows.
func plainKeybag(rnd io.Reader) ([]byte, error) {
	secret := make([]byte, 16)
	if _, err := io.ReadFull(rnd, secret); err != nil {
		return nil, fmt.Errorf("offline: random: %w", err)
	}
	kb, _, err := keybag.New(fmt.Sprintf("%x", secret), keybag.NewOptions{Iter: 1, DPIC: 1, Rand: rnd, Classes: []uint32{1, 2, 3, 4}})
	if err != nil {
		return nil, fmt.Errorf("offline: %w", err)
	}
	return kb.Marshal(), nil
}

// newUUID returns an uppercase 8-4-4-4-12 random UUID (Status.plist UUID).
func newUUID(rnd io.Reader) string {
	var u [16]byte
	_, _ = io.ReadFull(rnd, u[:]) // a short read leaves zeros: still a valid-looking ID
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
