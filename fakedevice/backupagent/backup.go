package backupagent

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/devicelink"
	"github.com/ibackup/ibackup/mobilebackup2/keybag"
)

// errorTexts are the device's descriptions for the injected final codes
// (mobilebackup2-and-backup-format.md §2.5).
var errorTexts = map[int]string{
	3:   "Failed to create snapshot: File exists (17)",
	102: "Failed to clean up the backup",
	104: "Multiple errors uploading files",
	105: "Insufficient free disk space on drive to back up",
	205: "Manifest references files not in backup",
	208: "Device locked",
}

// upFile is one file to upload.
type upFile struct {
	dev, host string
	src       string // path to read, or "" for data
	data      []byte
	key       []byte // per-file key: the content is sent encrypted (§6.4)
	n         int    // content file number (0 for metadata)
	size      int64
	// file is the item's manifest row, whose Digest is set once it is sent
	// (nil for metadata files).
	file *backupfmt.MBFile
}

// backup runs the device side of a backup (§4.3, §9).
func (a *agent) backup(req map[string]any) error {
	u, _ := req["TargetIdentifier"].(string)
	if u == "" || strings.ContainsAny(u, "/\\") {
		return a.finish(1, "Missing TargetIdentifier")
	}
	opts, _ := req["Options"].(map[string]any)
	force, _ := opts["ForceFullBackup"].(bool)
	snap := u + "/Snapshot"
	cr, err := a.cryptor()
	if err != nil {
		return err
	}

	clock := phaseClock{log: a.log, t: time.Now()}
	// 1. Previous state (§4.2).
	got, err := a.download(u + "/Status.plist")
	if err != nil {
		return err
	}
	full := force
	b, hadStatus := got[u+"/Status.plist"]
	var prevUUID string
	if !hadStatus {
		full = true // "No status exists" → full backup
	} else if st, err := backupfmt.ParseStatus(b); err != nil || st.Version != a.statusVersion() || !st.Finished() {
		full = true // unsupported or unfinished: start over (resume is not simulated)
	} else {
		prevUUID = st.UUID
	}
	if c := a.cfg.Faults.FinalError; c != 0 {
		return a.finish(int64(c), errorTexts[c])
	}
	if a.cfg.Faults.DeviceFull {
		return a.finish(106, errSnapshotNoSpace)
	}
	var prev *previous
	defer func() { prev.remove() }()
	if !full {
		prev, err = a.previousBackup(u, prevUUID, cr)
		if errors.Is(err, errZeroManifest) {
			return a.finish(205, "Error reading backup properties: Cannot parse a NULL or zero-length data") // pitfall 5
		}
		if err != nil {
			return err
		}
		full = prev == nil
	}

	clock.done("previous state")
	// 2. What to send: new files, and files whose lstat identity or
	// content differs from the previous backup's row.
	scanned := time.Now()
	items, err := scan(a.cfg.ContentDir)
	if err != nil {
		return err
	}
	var uploads []upFile
	var removals []string
	var need int64
	found, n := 0, 0
	for i := range items {
		it := &items[i]
		if prev != nil {
			if it.prev = prev.rows[it.rec.FileID]; it.prev != nil {
				found++
			}
		}
		if it.rec.Type() != backupfmt.FlagFile {
			if o := it.prev; o != nil && o.file != nil && o.file.Type() == backupfmt.FlagFile {
				removals = append(removals, a.contentFile(u, it.rec.FileID)) // a file became a directory
			}
			continue
		}
		if !full {
			o := it.prev
			if a.unchanged(it, o, prev) {
				if cr == nil {
					continue
				}
				if len(o.file.EncryptionKey) == keybag.WrappedKeyLen {
					it.rec.File.EncryptionKey = o.file.EncryptionKey // the stored file keeps its key
					continue
				}
			}
		}
		n++
		id := it.rec.FileID
		up := upFile{dev: "/var/mobile/" + it.rec.Domain + "/" + it.rec.RelativePath,
			host: a.contentFile(snap, id), src: it.path, n: n, size: it.rec.File.Size, file: it.rec.File}
		if cr != nil {
			// Per-file key wrapped with the class key (§6.4).
			key, wrapped, err := cr.newFileKey(it.rec.File.ProtectionClass)
			if err != nil {
				return err
			}
			it.rec.File.EncryptionKey, up.key, up.size = wrapped, key, paddedSize(up.size)
		}
		uploads = append(uploads, up)
		need += up.size
	}
	gone := prev.gone(items, found)
	for _, id := range gone {
		if o := prev.rows[id]; o.file != nil && o.file.Type() == backupfmt.FlagFile {
			removals = append(removals, a.contentFile(u, id))
		}
	}
	sort.Strings(removals)

	clock.done("scan")
	// 3. Free space (§4.2 step 4).
	if !a.cfg.Faults.IgnoreFreeSpace {
		ok, err := a.enoughSpace(need + a.cfg.SpaceMargin)
		if err != nil {
			return err
		}
		if !ok {
			return a.finish(105, errorTexts[105])
		}
	}

	// 4. Directories (§4.3 steps 5–6).
	for _, d := range a.layoutDirs(u) {
		if _, err := a.request(devicelink.MsgCreateDirectory, d, map[string]any{}, a.pct, uint64(0)); err != nil {
			return err
		}
	}
	for _, d := range a.layoutDirs(snap) {
		if _, err := a.request(devicelink.MsgCreateDirectory, d, map[string]any{}, a.pct, uint64(0)); err != nil {
			return err
		}
	}

	// 5. Content (§4.3 steps 7–9).
	status := &backupfmt.Status{Version: a.statusVersion(), UUID: newUUID(), Date: a.cfg.Now().UTC(),
		BackupState: backupfmt.BackupStateNew, IsFullBackup: full}
	if err := a.uploadStatus(u, status, backupfmt.SnapshotUploading); err != nil {
		return err
	}
	failed := map[string]bool{} // host paths the phone could not send
	for i := 0; i < len(uploads); i += a.cfg.BatchSize {
		batch := uploads[i:min(i+a.cfg.BatchSize, len(uploads))]
		a.pct = 10 + 70*float64(i)/float64(len(uploads))
		st, rerr, err := a.upload(batch)
		if err != nil {
			return err
		}
		for _, f := range rerr {
			failed[f] = true
		}
		if st.Code != 0 {
			if st.Code == devicelink.StatusNoSpace {
				return a.finish(105, errorTexts[105])
			}
			return a.finish(100, fmt.Sprintf("%s (%d)", st.Description, st.Code))
		}
	}
	clock.done("upload content")
	dbBytes, err := a.writeManifest(items, prev, gone)
	if err != nil {
		return err
	}
	plainDB := dbBytes
	var manifestKey []byte
	if cr != nil && cr.manifest {
		if dbBytes, manifestKey, err = cr.encryptDB(dbBytes); err != nil {
			return err
		}
	}
	mf, err := a.manifestPlist(cr, manifestKey)
	if err != nil {
		return err
	}
	if st, _, err := a.upload([]upFile{
		{dev: "Manifest.plist", host: snap + "/Manifest.plist", data: mf},
		{dev: a.manifestName(), host: snap + "/" + a.manifestName(), data: dbBytes},
	}); err != nil {
		return err
	} else if st.Code != 0 {
		return a.finish(105, errorTexts[105])
	}
	if err := a.uploadStatus(u, status, backupfmt.SnapshotMoving); err != nil {
		return err
	}

	clock.done("manifest")
	// 6. Commit (§4.3 steps 11–14).
	a.pct = 85
	for i := 0; i < len(uploads); i += a.cfg.BatchSize {
		moves := map[string]any{}
		for _, f := range uploads[i:min(i+a.cfg.BatchSize, len(uploads))] {
			if failed[f.host] {
				continue
			}
			moves[f.host] = u + strings.TrimPrefix(f.host, snap)
		}
		if err := a.expectOK(devicelink.MsgMoveItems, moves, map[string]any{}, a.pct, uint64(0)); err != nil {
			return err
		}
	}
	if err := a.expectOK(devicelink.MsgMoveItems, map[string]any{snap + "/Manifest.plist": u + "/Manifest.plist",
		snap + "/" + a.manifestName(): u + "/" + a.manifestName()}, map[string]any{}, a.pct, uint64(0)); err != nil {
		return err
	}
	if err := a.uploadStatus(u, status, backupfmt.SnapshotRemoving); err != nil {
		return err
	}
	if full && hadStatus {
		// A full backup over an earlier one: drop files it no longer has.
		stale, err := a.staleFiles(u, items)
		if err != nil {
			return err
		}
		removals = append(removals, stale...)
	}
	for i := 0; i < len(removals); i += a.cfg.BatchSize {
		list := toAny(removals[i:min(i+a.cfg.BatchSize, len(removals))])
		if err := a.expectOK(devicelink.MsgRemoveItems, list, map[string]any{}, a.pct, uint64(0)); err != nil {
			return err
		}
	}
	if err := a.expectOK(devicelink.MsgRemoveItems, []any{snap}, map[string]any{}, a.pct, uint64(0)); err != nil {
		return err
	}
	if err := a.uploadStatus(u, status, backupfmt.SnapshotFinished); err != nil {
		return err
	}

	if len(failed) > 0 {
		return a.finish(104, errorTexts[104]) // pitfall 12
	}
	clock.done("commit")
	// 7. Verification of the host's directory (§4.3 step 16).
	a.pct = 95
	if ok, err := a.checkHost(u, items, dbBytes, &clock); err != nil {
		return err
	} else if !ok {
		return a.finish(205, errorTexts[205])
	}
	clock.done("verify")
	if err := a.finish(0, ""); err != nil {
		return err
	}
	// Remembered once the host has the result: the host does not wait for it.
	a.cfg.Cache.remember(status.UUID, a.cfg.ContentDir, plainDB, scanned, items)
	return nil
}

// phaseClock logs how long each step of a backup took (debug level).
type phaseClock struct {
	log *slog.Logger
	t   time.Time
}

func (c *phaseClock) done(phase string) {
	now := time.Now()
	c.log.Debug("backupagent: backup step", "step", phase, "took", now.Sub(c.t))
	c.t = now
}

func (a *agent) expectOK(name string, args ...any) error {
	st, err := a.request(name, args...)
	if err != nil {
		return err
	}
	if st.Code != 0 {
		return a.finish(100, fmt.Sprintf("%s failed: %s (%d)", name, st.Description, st.Code))
	}
	return nil
}

// enoughSpace asks GetFreeDiskSpace, once more after a purge request.
func (a *agent) enoughSpace(need int64) (bool, error) {
	for try := 0; ; try++ {
		st, err := a.request(devicelink.MsgGetFreeDiskSpace, map[string]any{}, a.pct, uint64(0))
		if err != nil {
			return false, err
		}
		free, ok := devicelink.Int(st.Extra)
		if st.Code == 0 && ok && uint64(free) >= uint64(need) {
			return true, nil
		}
		if !a.cfg.Purge || try > 0 {
			return false, nil
		}
		if _, err := a.request(devicelink.MsgPurgeDiskSpace, need+2<<30, int64(4), map[string]any{}, a.pct, uint64(0)); err != nil {
			return false, err
		}
	}
}

func prefixDirs(base string) []string {
	out := []string{base}
	for i := 0; i < 256; i++ {
		out = append(out, fmt.Sprintf("%s/%02x", base, i))
	}
	return out
}

func (a *agent) uploadStatus(u string, st *backupfmt.Status, state string) error {
	st.SnapshotState = state
	b, err := st.Marshal()
	if err != nil {
		return fmt.Errorf("backupagent: %w", err)
	}
	s, _, err := a.upload([]upFile{{dev: "Status.plist", host: u + "/Status.plist", data: b}})
	if err != nil {
		return err
	}
	if s.Code != 0 {
		return a.finish(105, errorTexts[105])
	}
	return nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}

// staleFiles lists the host's prefix dirs and returns content files that
// are not part of this (full) backup.
func (a *agent) staleFiles(u string, items []item) ([]string, error) {
	present := make(map[string]bool, len(items))
	for i := range items {
		if items[i].rec.Type() == backupfmt.FlagFile {
			present[items[i].rec.FileID] = true
		}
	}
	var out []string
	for _, d := range a.contentDirs(u) {
		names, err := a.list(d)
		if err != nil {
			return nil, err
		}
		for name := range names {
			if !present[name] && backupfmt.ValidFileID(name) {
				out = append(out, d+"/"+name)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// list runs DLContentsOfDirectory and returns name → size.
func (a *agent) list(dir string) (map[string]int64, error) {
	st, err := a.request(devicelink.MsgContentsOfDir, dir, map[string]any{}, a.pct, uint64(0))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	d, _ := st.Extra.(map[string]any)
	for name, v := range d {
		e, _ := v.(map[string]any)
		if e["DLFileType"] == "DLFileTypeRegular" {
			n, _ := devicelink.Int(e["DLFileSize"])
			out[name] = n
		}
	}
	return out, nil
}

// checkHost re-reads the metadata and lists the prefix dirs; every content
// file of the manifest must be there (§4.3 step 16). The manifest is
// compared as it streams in.
func (a *agent) checkHost(u string, items []item, db []byte, clock *phaseClock) (bool, error) {
	meta := map[string]*chunkBuffer{}
	mdb := &matchWriter{want: db}
	err := a.downloadTo(func(name string) downloadSink {
		if name == u+"/"+a.manifestName() {
			return mdb
		}
		b := &chunkBuffer{limit: maxDownload}
		meta[name] = b
		return b
	}, u+"/Status.plist", u+"/Manifest.plist", u+"/"+a.manifestName())
	if err != nil {
		return false, err
	}
	clock.done("verify: metadata")
	for _, n := range []string{u + "/Status.plist", u + "/Manifest.plist"} {
		if b := meta[n]; b == nil || !b.ok || b.n == 0 {
			return false, nil
		}
	}
	if !mdb.matched() {
		return false, nil
	}
	if _, err := a.list(u); err != nil {
		return false, err
	}
	// items are sorted by fileID, so each prefix dir is listed once, in turn.
	var dir string
	var names map[string]int64
	for i := range items {
		it := &items[i]
		if it.rec.Type() != backupfmt.FlagFile {
			continue
		}
		id := it.rec.FileID
		if d := a.contentDir(u, id); d != dir || names == nil {
			if names, err = a.list(d); err != nil {
				return false, err
			}
			dir = d
		}
		if _, ok := names[id]; !ok {
			return false, nil
		}
	}
	return true, nil
}

func sha1Sum(b []byte) []byte {
	h := newSHA1()
	h.Write(b)
	return h.Sum(nil)
}

// cryptor returns the keys of an encrypted backup, or nil when the phone
// has no backup password.
func (a *agent) cryptor() (*cryptor, error) {
	kbBytes, kb, keys, err := a.enc.current()
	if err != nil || keys == nil {
		return nil, err
	}
	return &cryptor{kbBytes: kbBytes, kb: kb, keys: keys, manifest: EncryptsManifest(a.cfg.Lockdown.ProductVersion) && !a.cfg.MBDB}, nil
}

// sameEncryption reports whether the previous backup was made with the
// current setting: both plain, or both with the same keybag.
func sameEncryption(mf *backupfmt.Manifest, cr *cryptor) bool {
	if mf == nil || mf.IsEncrypted != (cr != nil) {
		return false
	}
	if cr == nil {
		return true
	}
	kb, err := keybag.Parse(mf.BackupKeyBag)
	return err == nil && bytes.Equal(kb.UUID, cr.kb.UUID)
}
