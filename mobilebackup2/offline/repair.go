package offline

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/keybag"
)

// RepairOptions configure Repair.
type RepairOptions struct {
	Options
	// Now stamps the rebuilt Status.plist; default time.Now.
	Now func() time.Time
}

// RepairReport tells what Repair did.
type RepairReport struct {
	Src string `json:"src"`
	// Out is the repaired backup folder (<out>/<folder name of src>).
	Out string `json:"out"`
	// Actions lists salvage steps in order, for humans.
	Actions []string `json:"actions"`
	// Dropped are manifest entries left out (content missing or unusable,
	// record undecodable); Fixed are entries kept with corrected metadata.
	Dropped []Problem `json:"dropped"`
	Fixed   []Problem `json:"fixed"`
	// Kept counts the records written; Orphans the stored files no
	// manifest named (not copied).
	Kept    int64 `json:"kept"`
	Orphans int64 `json:"orphans"`
	// Verify is the verify report of the result.
	Verify *Report `json:"verify"`
}

// ErrUnrepairable: nothing restorable can be built (for example an
// encrypted backup whose keybag is lost, or no readable manifest at all).
var ErrUnrepairable = errors.New("offline: backup cannot be repaired")

// metaSource is one place metadata may come from, best first.
type metaSource struct {
	dir  string // folder holding Manifest.plist / Manifest.db / Info.plist
	what string
}

// Repair builds a restorable backup from a damaged one (issue 9 item 4).
// The original is only read. The result goes to out/<folder name>; out must
// not exist or be empty and must not overlap src. Steps: salvage a leftover
// Snapshot/ (its newer manifest and content), fall back to the metadata of
// older versions kept by our snapshot store, rebuild Status.plist (and
// Info.plist / an unencrypted Manifest.plist when unreadable), drop entries
// whose content is missing or unusable, correct recorded sizes to the real
// content, and verify the result.
func Repair(src, out string, opts RepairOptions) (*RepairReport, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	src, err := Resolve(src)
	if err != nil {
		return nil, err
	}
	if err := checkNoOverlap(src, out); err != nil {
		return nil, err
	}
	if err := ensureEmptyDir(out); err != nil {
		return nil, err
	}
	rep := &RepairReport{Src: src, Out: filepath.Join(out, filepath.Base(src)), Actions: []string{}, Dropped: []Problem{}, Fixed: []Problem{}}
	r := &repairer{src: src, opts: opts, rep: rep}
	if err := r.run(); err != nil {
		return rep, err
	}
	vr, err := Verify(rep.Out, VerifyOptions{Options: opts.Options, NoHashRecord: true})
	rep.Verify = vr
	if err != nil {
		return rep, fmt.Errorf("offline: repaired backup does not open: %w", err)
	}
	return rep, nil
}

// checkNoOverlap refuses an output inside the source or around it.
func checkNoOverlap(src, out string) error {
	a, err := filepath.Abs(src)
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	if r, err := filepath.EvalSymlinks(a); err == nil {
		a = r
	}
	b, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	if r, err := filepath.EvalSymlinks(b); err == nil {
		b = r
	}
	within := func(x, y string) bool { return x == y || strings.HasPrefix(x, y+string(filepath.Separator)) }
	if within(b, a) || within(a, b) {
		return fmt.Errorf("offline: output %s overlaps the backup %s; the original is never modified", out, src)
	}
	return nil
}

type repairer struct {
	src  string
	opts RepairOptions
	rep  *RepairReport
}

func (r *repairer) act(format string, args ...any) {
	r.rep.Actions = append(r.rep.Actions, fmt.Sprintf(format, args...))
}

// sources lists metadata places, best first: the folder itself, a leftover
// Snapshot/, then older versions of our snapshot store, newest first.
func (r *repairer) sources() []metaSource {
	out := []metaSource{{r.src, "backup"}}
	if isDir(filepath.Join(r.src, SnapshotDir)) {
		out = append(out, metaSource{filepath.Join(r.src, SnapshotDir), "leftover Snapshot/"})
	}
	real, err := filepath.EvalSymlinks(r.src)
	if err != nil {
		return out
	}
	versions := filepath.Dir(filepath.Dir(real)) // .ibackup/<UDID>/versions
	if filepath.Base(versions) != "versions" {
		return out
	}
	ents, err := os.ReadDir(versions)
	if err != nil {
		return out
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && filepath.Join(versions, e.Name()) != filepath.Dir(real) {
			ids = append(ids, e.Name())
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ids)))
	for _, id := range ids {
		out = append(out, metaSource{filepath.Join(versions, id, filepath.Base(real)), "older version " + id})
	}
	return out
}

func (r *repairer) run() error {
	srcs := r.sources()
	status, _ := backupfmt.ReadStatus(filepath.Join(r.src, StatusPlist))

	// Metadata is taken from the first source that has a readable copy;
	// every fallback is listed in the report.
	// Manifest.plist: first readable one.
	var mf *backupfmt.Manifest
	for _, s := range srcs {
		m, err := backupfmt.ReadManifest(filepath.Join(s.dir, ManifestPlist))
		if err == nil {
			mf = m
			if s.dir != r.src {
				r.act("Manifest.plist taken from %s", s.what)
			}
			break
		}
		if s.dir == r.src {
			r.act("Manifest.plist unreadable: %v", err)
		}
	}
	// Info.plist: first readable one.
	var info *backupfmt.Info
	for _, s := range srcs {
		if in, err := backupfmt.ReadInfo(filepath.Join(s.dir, InfoPlist)); err == nil {
			info = in
			if s.dir != r.src {
				r.act("Info.plist taken from %s", s.what)
			}
			break
		}
	}

	// Manifest records: prefer the Snapshot's when the run got past
	// uploading (its manifest is then complete and newer, format §4.3).
	order := srcs
	if status != nil && (status.SnapshotState == backupfmt.SnapshotMoving || status.SnapshotState == backupfmt.SnapshotRemoving) &&
		len(srcs) > 1 && srcs[1].dir == filepath.Join(r.src, SnapshotDir) {
		order = append([]metaSource{srcs[1], srcs[0]}, srcs[2:]...)
	}
	b, from, err := r.openManifest(order, mf)
	if err != nil {
		return err
	}
	defer b.Close()
	if from.dir != r.src {
		r.act("manifest records taken from %s", from.what)
	}
	if mf == nil {
		if b.Encrypted {
			return fmt.Errorf("%w: encrypted backup and no readable Manifest.plist (the keybag is lost)", ErrUnrepairable)
		}
		mf = &backupfmt.Manifest{}
		r.act("Manifest.plist rebuilt (unencrypted backup)")
	}
	if info == nil {
		info = rebuildInfo(filepath.Base(r.src), mf, r.opts.Now())
		r.act("Info.plist rebuilt from Manifest.plist")
	}
	if mf.Lockdown.ProductVersion == "" && info.ProductVersion != "" {
		mf.Lockdown = backupfmt.Lockdown{ProductVersion: info.ProductVersion, BuildVersion: info.BuildVersion,
			ProductType: info.ProductType, DeviceName: info.DeviceName, SerialNumber: info.SerialNumber,
			UniqueDeviceID: info.UniqueIdentifier, Extra: mf.Lockdown.Extra}
	}

	// Status.plist is always rewritten as a finished, current-format
	// backup (restore refuses anything else, format §7.2 step 2); the UUID
	// is kept so the device's cache keyed by it still applies.
	st := backupfmt.Status{BackupState: backupfmt.BackupStateNew, SnapshotState: backupfmt.SnapshotFinished,
		Date: r.opts.Now().UTC().Truncate(time.Second)}
	if status != nil {
		st.UUID, st.IsFullBackup = status.UUID, status.IsFullBackup
	}
	if status == nil || !status.Finished() || status.Check() != nil {
		r.act("Status.plist rebuilt (BackupState new, SnapshotState finished)")
	}
	cfg := WriterConfig{Format: b.Format, Info: info, Manifest: *mf, Status: st, Now: r.opts.Now}
	if b.Encrypted {
		cfg.Keys, cfg.Keybag, cfg.ManifestDBKey = b.keys, mf.BackupKeyBag, b.dbKey
	}
	w, err := NewWriter(r.rep.Out, cfg)
	if err != nil {
		return err
	}
	// Stream the chosen manifest: every record is kept, corrected or
	// dropped; content is copied byte for byte (still encrypted).
	c := &copier{r: r, b: b, w: w, dirs: contentDirs(b.Format, from.dir, r.src)}
	if err := b.Each(c.record); err != nil {
		r.act("manifest damaged part-way, entries after the damage are lost: %v", err)
	}
	if err := w.Close(); err != nil {
		return err
	}
	if n := countStored(b.Format, r.src) - c.used; n > 0 {
		r.rep.Orphans = n
		r.act("%d stored files no manifest entry names were left out", n)
	}
	if c.salvaged > 0 {
		r.act("%d files salvaged from the leftover Snapshot/", c.salvaged)
	}
	if isDir(filepath.Join(r.src, SnapshotDir)) {
		r.act("leftover Snapshot/ not copied (the result has no staging folder)")
	}
	return nil
}

// openManifest opens the first readable manifest among srcs.
func (r *repairer) openManifest(srcs []metaSource, mf *backupfmt.Manifest) (*Backup, metaSource, error) {
	var errs []string
	for _, s := range srcs {
		b := &Backup{Dir: s.dir, Manifest: mf}
		switch {
		case fileExists(filepath.Join(s.dir, ManifestDB)):
			b.Format = FormatManifestDB
		case fileExists(filepath.Join(s.dir, ManifestMBDB)):
			b.Format = FormatMBDB
		default:
			continue
		}
		b.Encrypted = mf != nil && mf.IsEncrypted
		if mf == nil && b.Format == FormatManifestDB && !isPlainSQLite(filepath.Join(s.dir, ManifestDB)) {
			b.Encrypted = true
		}
		if b.Encrypted {
			if err := b.unlock(r.opts.Password); err != nil {
				if errors.Is(err, ErrPasswordRequired) || errors.Is(err, ErrWrongPassword) {
					return nil, s, err
				}
				errs = append(errs, s.what+": "+err.Error())
				continue
			}
		}
		if b.Format == FormatManifestDB {
			if err := b.openDB(filepath.Join(s.dir, ManifestDB), r.opts.TempDir); err != nil {
				errs = append(errs, s.what+": "+err.Error())
				b.Close()
				continue
			}
		} else if f, err := os.Open(filepath.Join(s.dir, ManifestMBDB)); err != nil {
			errs = append(errs, s.what+": "+err.Error())
			continue
		} else {
			_, err := backupfmt.NewMBDBReader(f)
			f.Close()
			if err != nil {
				errs = append(errs, s.what+": "+err.Error())
				continue
			}
		}
		return b, s, nil
	}
	return nil, metaSource{}, fmt.Errorf("%w: no readable manifest (%s)", ErrUnrepairable, strings.Join(errs, "; "))
}

// contentDirs lists the folders content may be found in, best first.
func contentDirs(f Format, manifestDir, src string) []string {
	snap := filepath.Join(src, SnapshotDir)
	if manifestDir == snap {
		return []string{snap, src}
	}
	return []string{src, snap}
}

// rebuildInfo makes an Info.plist from Manifest.plist identity values.
func rebuildInfo(folder string, mf *backupfmt.Manifest, now time.Time) *backupfmt.Info {
	ld := mf.Lockdown
	udid := ld.UniqueDeviceID
	if udid == "" {
		udid = folder
	}
	return &backupfmt.Info{BuildVersion: ld.BuildVersion, DeviceName: ld.DeviceName, DisplayName: ld.DeviceName,
		ProductType: ld.ProductType, ProductVersion: ld.ProductVersion, SerialNumber: ld.SerialNumber,
		TargetIdentifier: folder, TargetType: "Device", UniqueIdentifier: strings.ToUpper(udid),
		LastBackupDate: now.UTC().Truncate(time.Second), ITunesVersion: "10.0.1", ITunesSettings: map[string]any{}}
}

// copier copies the content of kept records.
type copier struct {
	r        *repairer
	b        *Backup
	w        *Writer
	dirs     []string
	used     int64 // content files taken from the main folder
	salvaged int64 // content files taken from Snapshot/
	buf      []byte
}

func (c *copier) drop(rec backupfmt.Record, kind Kind, detail string) {
	c.r.rep.Dropped = append(c.r.rep.Dropped, Problem{Kind: kind, FileID: rec.FileID, Domain: rec.Domain, Path: rec.RelativePath, Detail: detail})
}

// record decides about one manifest record.
func (c *copier) record(rec backupfmt.Record) error {
	switch {
	case rec.FileErr != nil || rec.File == nil:
		c.drop(rec, KindBadRecord, fmt.Sprint(rec.FileErr))
		return nil
	case checkDomain(rec.Domain) != nil:
		c.drop(rec, KindBadRecord, checkDomain(rec.Domain).Error())
		return nil
	case rec.FileID != backupfmt.FileID(rec.Domain, rec.RelativePath):
		c.drop(rec, KindBadRecord, "fileID is not SHA-1 of domain-path")
		return nil
	case rec.Type() == 0:
		c.drop(rec, KindBadRecord, fmt.Sprintf("flags %d name no file type", rec.Flags))
		return nil
	}
	if rec.Type() != backupfmt.FlagFile {
		c.r.rep.Kept++
		return c.w.AddStored(rec, nil)
	}
	var reasons []string
	for _, d := range c.dirs {
		p := contentPath(d, c.b.Format, rec.FileID)
		if !fileExists(p) {
			continue
		}
		ok, err := c.copyContent(&rec, p)
		if err != nil {
			return err // output side failure
		}
		if ok == "" {
			if d == c.r.src {
				c.used++
			} else {
				c.salvaged++
			}
			c.r.rep.Kept++
			return c.w.AddStored(rec, nil)
		}
		reasons = append(reasons, ok)
	}
	kind, detail := KindMissing, "content file is not in the backup"
	if len(reasons) > 0 {
		kind, detail = KindUndecryptable, strings.Join(reasons, "; ")
	}
	c.drop(rec, kind, detail)
	return nil
}

// copyContent copies the stored file at p into the output, checking it
// decrypts, and corrects Size/Digest to the real content. It returns a
// non-empty reason when the content is unusable (the copy is removed).
func (c *copier) copyContent(rec *backupfmt.Record, p string) (string, error) {
	in, err := os.Open(p)
	if err != nil {
		return err.Error(), nil
	}
	defer in.Close()
	dst := contentPath(c.w.dir, c.w.cfg.Format, rec.FileID)
	out, err := os.Create(dst)
	if err != nil {
		return "", fmt.Errorf("offline: %w", err)
	}
	h := sha1.New()
	var src io.Reader = io.TeeReader(in, out) // stored bytes verbatim
	var plain io.Reader = src
	if c.b.Encrypted {
		key, err := c.b.FileKey(*rec)
		if err != nil {
			out.Close()
			os.Remove(dst)
			return err.Error(), nil
		}
		if plain, err = keybag.NewDecryptReader(src, key); err != nil {
			out.Close()
			os.Remove(dst)
			return err.Error(), nil
		}
	}
	if c.buf == nil {
		c.buf = make([]byte, 256<<10)
	}
	n, rerr := io.CopyBuffer(h, plain, c.buf)
	cerr := out.Close()
	if rerr != nil || cerr != nil {
		os.Remove(dst)
		if cerr != nil {
			return "", fmt.Errorf("offline: %w", cerr)
		}
		return rerr.Error(), nil
	}
	f := *rec.File
	fixed := []string{}
	if n != f.Size {
		fixed = append(fixed, fmt.Sprintf("size %d → %d (content kept whole)", f.Size, n))
		f.Size = n
	}
	if sum := h.Sum(nil); len(f.Digest) == sha1.Size && string(sum) != string(f.Digest) {
		fixed = append(fixed, "digest did not match the content; updated")
		f.Digest = sum
	}
	if len(fixed) > 0 {
		c.r.rep.Fixed = append(c.r.rep.Fixed, Problem{Kind: KindSizeMismatch, FileID: rec.FileID, Domain: rec.Domain,
			Path: rec.RelativePath, Detail: strings.Join(fixed, "; "), Expected: rec.File.Size, Actual: n})
	}
	rec.File = &f
	return "", nil
}

// countStored counts the stored content files of the main folder.
func countStored(f Format, src string) int64 {
	var n int64
	walk := func(d string) {
		ents, err := os.ReadDir(d)
		if err != nil {
			return
		}
		for _, e := range ents {
			if backupfmt.ValidFileID(e.Name()) && e.Type().IsRegular() {
				n++
			}
		}
	}
	if f == FormatMBDB {
		walk(src)
		return n
	}
	for i := 0; i < 256; i++ {
		walk(filepath.Join(src, fmt.Sprintf("%02x", i)))
	}
	return n
}
