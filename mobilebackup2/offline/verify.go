package offline

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/snapshot"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	Options
	// HashRecord, when set, is checked for bit rot. When nil, the record
	// our snapshot store keeps beside the folder is used if present.
	HashRecord HashRecord
	// NoHashRecord disables the automatic lookup.
	NoHashRecord bool
	// Workers reading files in parallel; default GOMAXPROCS bounded to
	// 2–4. Each holds one 256 KiB buffer; the report does not depend on it.
	Workers int
}

// verifier holds the state of one Verify run.
type verifier struct {
	b      *Backup
	rep    *Report
	hr     HashRecord // nil: none
	look   *sumLookup
	mu     sync.Mutex // guards rep.Problems, rep.Bytes, rep.Checked
	onDisk [][20]byte // sorted fileIDs of stored content files
	seen   []bool     // parallel to onDisk
	extra  []string   // non-fileID names in content folders
}

func (v *verifier) add(p Problem) {
	v.mu.Lock()
	v.rep.Problems = append(v.rep.Problems, p)
	v.mu.Unlock()
}

// Verify checks a backup folder and reports every problem by file (issue 9
// item 3). The returned error is non-nil only when the backup could not be
// read at all; the report (never nil) then has Fatal set and exit code 2.
// A wrong or missing password is such an error and is found before any
// content is read.
func Verify(dir string, opts VerifyOptions) (*Report, error) {
	rep := &Report{Dir: dir, Problems: []Problem{}}
	b, err := Open(dir, opts.Options)
	if err != nil {
		rep.Fatal = err.Error()
		return rep, err
	}
	defer b.Close()
	rep.Dir, rep.Format, rep.Encrypted = b.Dir, b.Format, b.Encrypted
	hr := opts.HashRecord
	if hr == nil && !opts.NoHashRecord {
		hr = findHashRecord(b.Dir)
	}
	v := &verifier{b: b, rep: rep, hr: hr, look: &sumLookup{hr: hr}}
	rep.UsedHashRecord = hr != nil
	v.checkMetadata()
	if err := v.listDisk(); err != nil {
		rep.Fatal = err.Error()
		return rep, err
	}
	// One goroutine walks the manifest (records, counts, presence); the
	// workers read content. The manifest is streamed, so memory does not
	// grow with its size; only 20 bytes per stored file are kept.
	workers := opts.Workers
	if workers <= 0 {
		workers = min(max(runtime.GOMAXPROCS(0), 2), 4)
	}
	jobs := make(chan job, 64)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, contentBufSize)
			for j := range jobs {
				v.checkContent(j, buf)
			}
		}()
	}
	each := b.Each
	if rs, ok := hr.(*recordSums); ok && b.db != nil {
		// Stream the record beside the manifest read in fileID order
		// (content paths <xx>/<fileID> sort the same way).
		if cur, err := rs.r.NewCursor(); err == nil {
			v.look = &sumLookup{cur: cur}
			each = b.db.EachByFileID
		}
	}
	iterErr := each(func(rec backupfmt.Record) error {
		v.checkRecord(rec, jobs)
		return nil
	})
	close(jobs)
	wg.Wait()
	if iterErr != nil {
		v.add(Problem{Kind: KindManifest, Path: string(b.Format), Detail: iterErr.Error()})
	}
	if err := v.look.close(); err != nil {
		v.add(Problem{Kind: KindMetadata, Path: snapshot.RecordName, Detail: "verification record unreadable: " + err.Error()})
	}
	v.reportOrphans()
	sortProblems(rep.Problems)
	return rep, nil
}

func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.Domain != b.Domain {
			return a.Domain < b.Domain
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.FileID != b.FileID { // duplicate rows read by different workers
			return a.FileID < b.FileID
		}
		return a.Detail < b.Detail
	})
}

// checkMetadata reports missing, unparseable and inconsistent metadata
// (format §4.4, §5.2, §5.4, §7.2).
func (v *verifier) checkMetadata() {
	b := v.b
	for _, m := range []struct {
		name string
		err  error
	}{{InfoPlist, b.InfoErr}, {StatusPlist, b.StatusErr}, {ManifestPlist, b.ManifestErr}} {
		if m.err != nil {
			v.add(Problem{Kind: KindMetadata, Path: m.name, Detail: m.err.Error()})
		}
	}
	if s := b.Status; s != nil {
		if err := s.Check(); err != nil {
			v.add(Problem{Kind: KindInconsistent, Path: StatusPlist, Detail: err.Error()})
		}
		if !s.Finished() {
			v.add(Problem{Kind: KindUnfinished, Path: StatusPlist,
				Detail: fmt.Sprintf("SnapshotState is %q: the last backup run did not finish", s.SnapshotState)})
		}
	}
	if isDir(filepath.Join(b.Dir, SnapshotDir)) {
		v.add(Problem{Kind: KindSnapshotLeftover, Path: SnapshotDir,
			Detail: "staging folder of an interrupted backup remains (format §4.5)"})
	}
	if b.Info != nil && b.Manifest != nil {
		ld := b.Manifest.Lockdown
		if ld.ProductVersion != "" && b.Info.ProductVersion != "" && ld.ProductVersion != b.Info.ProductVersion {
			v.add(Problem{Kind: KindInconsistent, Path: InfoPlist, Detail: fmt.Sprintf(
				"Product Version %q but Manifest.plist Lockdown.ProductVersion %q", b.Info.ProductVersion, ld.ProductVersion)})
		}
		if ld.UniqueDeviceID != "" && b.Info.UniqueIdentifier != "" && !strings.EqualFold(ld.UniqueDeviceID, b.Info.UniqueIdentifier) {
			v.add(Problem{Kind: KindInconsistent, Path: InfoPlist, Detail: fmt.Sprintf(
				"Unique Identifier %q but Manifest.plist Lockdown.UniqueDeviceID %q", b.Info.UniqueIdentifier, ld.UniqueDeviceID)})
		}
	}
	if b.Manifest != nil && !b.Manifest.IsEncrypted && b.Format == FormatManifestDB && !isPlainSQLite(filepath.Join(b.Dir, ManifestDB)) {
		v.add(Problem{Kind: KindInconsistent, Path: ManifestDB, Detail: "Manifest.plist says not encrypted but Manifest.db is not plain SQLite"})
	}
	if v.hr != nil {
		names := []string{InfoPlist, StatusPlist, ManifestPlist, ManifestDB, ManifestMBDB}
		sums, err := sumsOf(v.hr, names)
		if err != nil {
			v.add(Problem{Kind: KindMetadata, Path: snapshot.RecordName, Detail: "verification record unreadable: " + err.Error()})
		}
		for _, name := range names {
			if s := sums[name]; s.ok {
				v.checkStored(s, filepath.Join(b.Dir, name), Problem{Path: name})
			}
		}
	}
}

// checkStored compares a metadata file with the hash record.
func (v *verifier) checkStored(s recSum, path string, p Problem) {
	size, want := s.size, s.sha1
	f, err := os.Open(path)
	if err != nil {
		p.Kind, p.Detail = KindMissing, err.Error()
		v.add(p)
		return
	}
	defer f.Close()
	h := sha1.New()
	n, err := io.Copy(h, f)
	if err != nil {
		p.Kind, p.Detail = KindUnreadable, err.Error()
		v.add(p)
		return
	}
	if n != size || hex.EncodeToString(h.Sum(nil)) != want {
		p.Kind, p.Expected, p.Actual = KindChecksumMismatch, size, n
		p.Detail = "stored bytes differ from the verification record (bit rot or later change)"
		v.add(p)
	}
}

// listDisk collects the fileIDs of stored content files (sorted, 20 bytes
// each, so memory stays small even for a million files).
func (v *verifier) listDisk() error {
	dirs := []string{v.b.Dir}
	if v.b.Format == FormatManifestDB {
		dirs = dirs[:0]
		for i := 0; i < 256; i++ {
			dirs = append(dirs, filepath.Join(v.b.Dir, fmt.Sprintf("%02x", i)))
		}
	}
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if errors.Is(err, os.ErrNotExist) && d != v.b.Dir {
			continue
		}
		if err != nil {
			return fmt.Errorf("offline: %w", err)
		}
		for _, e := range ents {
			name := e.Name()
			if d == v.b.Dir && v.b.Format == FormatMBDB && (isMetaName(name) || e.IsDir()) {
				continue
			}
			var id [20]byte
			if !backupfmt.ValidFileID(name) || (v.b.Format == FormatManifestDB && name[:2] != filepath.Base(d)) {
				v.extra = append(v.extra, filepath.Join(filepath.Base(d), name))
				continue
			}
			hex.Decode(id[:], []byte(name))
			v.onDisk = append(v.onDisk, id)
		}
	}
	sort.Slice(v.onDisk, func(i, j int) bool { return bytes.Compare(v.onDisk[i][:], v.onDisk[j][:]) < 0 })
	v.seen = make([]bool, len(v.onDisk))
	return nil
}

// isMetaName reports the non-content names allowed in an mbdb-era folder.
func isMetaName(n string) bool {
	switch n {
	case InfoPlist, StatusPlist, ManifestPlist, ManifestDB, ManifestMBDB, "Manifest.mbdx", SnapshotDir:
		return true
	}
	return strings.HasPrefix(n, ".")
}

// stored marks fileID as referenced and reports whether it is on disk.
func (v *verifier) stored(fileID string) bool {
	var id [20]byte
	if _, err := hex.Decode(id[:], []byte(fileID)); err != nil || len(fileID) != 40 {
		return false
	}
	i := sort.Search(len(v.onDisk), func(i int) bool { return bytes.Compare(v.onDisk[i][:], id[:]) >= 0 })
	if i < len(v.onDisk) && v.onDisk[i] == id {
		v.seen[i] = true
		return true
	}
	return false
}

// checkRecord validates one manifest record and queues content checks.
// It runs on the iterating goroutine only.
func (v *verifier) checkRecord(rec backupfmt.Record, jobs chan<- job) {
	rep := v.rep
	rep.Records++
	p := Problem{FileID: rec.FileID, Domain: rec.Domain, Path: rec.RelativePath}
	switch rec.Type() {
	case backupfmt.FlagFile:
		rep.Files++
	case backupfmt.FlagDirectory:
		rep.Dirs++
	case backupfmt.FlagSymlink:
		rep.Symlinks++
	default:
		p.Kind, p.Detail = KindBadRecord, fmt.Sprintf("flags %d name no file type", rec.Flags)
		v.add(p)
	}
	if rec.FileErr != nil {
		p.Kind, p.Detail = KindBadRecord, rec.FileErr.Error()
		v.add(p)
	}
	if want := backupfmt.FileID(rec.Domain, rec.RelativePath); rec.FileID != want {
		p.Kind, p.Detail = KindBadRecord, fmt.Sprintf("fileID is not SHA-1 of domain-path (want %s)", want)
		v.add(p)
	}
	if err := checkDomain(rec.Domain); err != nil {
		p.Kind, p.Detail = KindBadRecord, err.Error()
		v.add(p)
	}
	if rec.File != nil && rec.File.Type() != rec.Type() && rec.Type() != 0 {
		p.Kind, p.Detail = KindBadRecord, fmt.Sprintf("flags %d disagree with mode %o", rec.Flags, rec.File.Mode)
		v.add(p)
	}
	// Only regular files have content (format §5.1).
	if rec.Type() != backupfmt.FlagFile {
		return
	}
	if !v.stored(rec.FileID) {
		p.Kind, p.Detail = KindMissing, "content file is not in the backup"
		if rec.File != nil {
			p.Expected = rec.File.Size
		}
		v.add(p)
		return
	}
	if rec.File == nil {
		return
	}
	hrel := rec.FileID
	if v.b.Format == FormatManifestDB {
		hrel = rec.FileID[:2] + "/" + rec.FileID
	}
	jobs <- job{rec: rec, sum: v.look.sum(hrel)}
}

// job is one stored file for a content worker, with what the hash record
// says about it.
type job struct {
	rec backupfmt.Record
	sum recSum
}

// checkDomain rejects domain names a device refuses on restore (format §5.6).
func checkDomain(d string) error {
	if d == "" {
		return errors.New("empty domain")
	}
	if strings.Contains(d, "/") || strings.Contains(d, "..") || strings.ContainsRune(d, 0) {
		return fmt.Errorf("domain %q contains '/' or '..' (refused on restore)", d)
	}
	return nil
}

// reportOrphans reports stored files no record referenced.
func (v *verifier) reportOrphans() {
	for i, id := range v.onDisk {
		if v.seen[i] {
			continue
		}
		h := hex.EncodeToString(id[:])
		rel := h
		if v.b.Format == FormatManifestDB {
			rel = h[:2] + "/" + h
		}
		v.add(Problem{Kind: KindOrphan, FileID: h, Path: rel, Detail: "stored file not named by the manifest"})
	}
	for _, e := range v.extra {
		v.add(Problem{Kind: KindOrphan, Path: filepath.ToSlash(e), Detail: "unexpected file in a content folder"})
	}
}
