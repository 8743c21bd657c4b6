package offline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
)

// Entry is one listed backup item, JSON-friendly (ibackup ls --json).
type Entry struct {
	Domain          string    `json:"domain"`
	Path            string    `json:"path"`
	FileID          string    `json:"fileID"`
	Type            string    `json:"type"` // file, dir, symlink, unknown
	Size            int64     `json:"size"`
	Mode            string    `json:"mode"` // octal permission and type bits, e.g. "100644"
	UserID          uint32    `json:"uid"`
	GroupID         uint32    `json:"gid"`
	Modified        time.Time `json:"modified"`
	Target          string    `json:"target,omitempty"`
	ProtectionClass int       `json:"protectionClass"`
	Encrypted       bool      `json:"encrypted,omitempty"`
	Err             string    `json:"error,omitempty"` // the row's metadata did not decode
}

// TypeName names a Files.flags type.
func TypeName(flags int) string {
	switch flags & backupfmt.FlagsTypeMask {
	case backupfmt.FlagFile:
		return "file"
	case backupfmt.FlagDirectory:
		return "dir"
	case backupfmt.FlagSymlink:
		return "symlink"
	}
	return "unknown"
}

// EntryOf converts a manifest record to an Entry.
func EntryOf(rec backupfmt.Record) Entry {
	e := Entry{Domain: rec.Domain, Path: rec.RelativePath, FileID: rec.FileID, Type: TypeName(rec.Flags)}
	if f := rec.File; f != nil {
		e.Size, e.Mode, e.UserID, e.GroupID = f.Size, fmt.Sprintf("%o", f.Mode), f.UserID, f.GroupID
		e.Modified = time.Unix(f.LastModified, 0).UTC()
		e.Target, e.ProtectionClass, e.Encrypted = f.Target, f.ProtectionClass, len(f.EncryptionKey) > 0
	}
	if rec.FileErr != nil {
		e.Err = rec.FileErr.Error()
	}
	return e
}

// ListOptions configure List.
type ListOptions struct {
	Options
	Domain string // only this domain; "" = all
}

// List streams the entries of a backup to fn in manifest order (ibackup
// ls). Encrypted iOS 10.2+ backups need the password (the manifest itself is
// encrypted); mbdb-era ones list without it.
func List(dir string, opts ListOptions, fn func(Entry) error) error {
	if opts.Password == "" {
		// mbdb manifests are not encrypted: list without unlocking.
		if b, err := openForList(dir, opts.Options); err == nil {
			defer b.Close()
			return b.EachDomain(opts.Domain, func(r backupfmt.Record) error { return fn(EntryOf(r)) })
		}
	}
	b, err := Open(dir, opts.Options)
	if err != nil {
		return err
	}
	defer b.Close()
	return b.EachDomain(opts.Domain, func(r backupfmt.Record) error { return fn(EntryOf(r)) })
}

// openForList opens an mbdb backup without a password (its manifest is
// plain); it fails for anything else so List falls back to Open.
func openForList(dir string, opts Options) (*Backup, error) {
	d, err := Resolve(dir)
	if err != nil {
		return nil, err
	}
	if fileExists(filepath.Join(d, ManifestDB)) || !fileExists(filepath.Join(d, ManifestMBDB)) {
		return nil, ErrNotBackup
	}
	b := &Backup{Dir: d, Format: FormatMBDB}
	b.Manifest, b.ManifestErr = backupfmt.ReadManifest(filepath.Join(d, ManifestPlist))
	b.Encrypted = b.Manifest != nil && b.Manifest.IsEncrypted
	return b, nil
}

// Summary describes a backup (ibackup info).
type Summary struct {
	Dir            string    `json:"dir"`
	Format         Format    `json:"format"`
	Encrypted      bool      `json:"encrypted"`
	UDID           string    `json:"udid"`
	DeviceName     string    `json:"deviceName"`
	ProductType    string    `json:"productType"`
	ProductVersion string    `json:"productVersion"`
	BuildVersion   string    `json:"buildVersion"`
	SerialNumber   string    `json:"serialNumber"`
	Date           time.Time `json:"date"`
	SnapshotState  string    `json:"snapshotState"`
	IsFullBackup   bool      `json:"isFullBackup"`
	// Counts are known only when the manifest could be read (encrypted
	// iOS 10.2+ backups need the password).
	CountsKnown bool  `json:"countsKnown"`
	Files       int64 `json:"files"`
	Dirs        int64 `json:"dirs"`
	Symlinks    int64 `json:"symlinks"`
	Domains     int   `json:"domains"`
	// DataSize is the sum of recorded file sizes; DiskSize the bytes the
	// folder takes (all files, metadata included).
	DataSize int64 `json:"dataSize"`
	DiskSize int64 `json:"diskSize"`
	// Problems lists metadata files that could not be read.
	Problems []string `json:"problems,omitempty"`
}

// Describe summarises a backup (ibackup info). Without a password an
// encrypted Manifest.db backup is summarised from its plists only.
func Describe(dir string, opts Options) (*Summary, error) {
	b, err := Open(dir, opts)
	if errors.Is(err, ErrPasswordRequired) {
		// mbdb manifests are plain: count without the password.
		if b, err = openForList(dir, opts); err != nil {
			return describeLocked(dir)
		}
		b.Info, b.InfoErr = backupfmt.ReadInfo(filepath.Join(b.Dir, InfoPlist))
		b.Status, b.StatusErr = backupfmt.ReadStatus(filepath.Join(b.Dir, StatusPlist))
	}
	if err != nil {
		return nil, err
	}
	defer b.Close()
	s := describeMeta(b)
	domains := map[string]struct{}{}
	err = b.Each(func(r backupfmt.Record) error {
		domains[r.Domain] = struct{}{}
		switch r.Type() {
		case backupfmt.FlagFile:
			s.Files++
			if r.File != nil {
				s.DataSize += r.File.Size
			}
		case backupfmt.FlagDirectory:
			s.Dirs++
		case backupfmt.FlagSymlink:
			s.Symlinks++
		}
		return nil
	})
	s.Domains = len(domains)
	s.CountsKnown = err == nil
	if err != nil {
		s.Problems = append(s.Problems, err.Error())
	}
	return s, nil
}

func describeLocked(dir string) (*Summary, error) {
	d, err := Resolve(dir)
	if err != nil {
		return nil, err
	}
	b := &Backup{Dir: d, Format: FormatManifestDB, Encrypted: true}
	b.Info, b.InfoErr = backupfmt.ReadInfo(filepath.Join(d, InfoPlist))
	b.Status, b.StatusErr = backupfmt.ReadStatus(filepath.Join(d, StatusPlist))
	b.Manifest, b.ManifestErr = backupfmt.ReadManifest(filepath.Join(d, ManifestPlist))
	return describeMeta(b), nil
}

// describeMeta fills the Summary from the plists and the folder size.
func describeMeta(b *Backup) *Summary {
	s := &Summary{Dir: b.Dir, Format: b.Format, Encrypted: b.Encrypted, UDID: filepath.Base(b.Dir)}
	if m := b.Manifest; m != nil {
		ld := m.Lockdown
		s.DeviceName, s.ProductType, s.ProductVersion = ld.DeviceName, ld.ProductType, ld.ProductVersion
		s.BuildVersion, s.SerialNumber, s.Date = ld.BuildVersion, ld.SerialNumber, m.Date
		if ld.UniqueDeviceID != "" {
			s.UDID = ld.UniqueDeviceID
		}
	}
	if in := b.Info; in != nil {
		fill := func(dst *string, v string) {
			if *dst == "" {
				*dst = v
			}
		}
		fill(&s.DeviceName, in.DeviceName)
		fill(&s.ProductType, in.ProductType)
		fill(&s.ProductVersion, in.ProductVersion)
		fill(&s.BuildVersion, in.BuildVersion)
		fill(&s.SerialNumber, in.SerialNumber)
		if !in.LastBackupDate.IsZero() {
			s.Date = in.LastBackupDate
		}
	}
	if st := b.Status; st != nil {
		s.SnapshotState, s.IsFullBackup = st.SnapshotState, st.IsFullBackup
		if !st.Date.IsZero() {
			s.Date = st.Date
		}
	}
	for _, e := range []error{b.InfoErr, b.StatusErr, b.ManifestErr} {
		if e != nil {
			s.Problems = append(s.Problems, e.Error())
		}
	}
	// Walk the resolved directory: our version store makes <UDID> a symlink, which Walk
	// would not descend into.
	root := b.Dir
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	_ = filepath.Walk(root, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			s.DiskSize += info.Size()
		}
		return nil
	})
	return s
}
