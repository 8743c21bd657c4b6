package backupagent

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/devicelink"
)

// State is what survives between sessions of one fake phone: a restore
// that waits for a reboot (RestoreShouldReboot false). Safe for concurrent use.
type State struct {
	mu      sync.Mutex
	dir     string
	pending *staged
}

// staged is a verified restore waiting to be applied.
type staged struct {
	dir    string // staging directory holding the received files
	items  []backupfmt.Record
	remove bool
	system bool
	after  func() error // run once the files are applied (adopting the backup password)
}

// NewState returns an empty State that keeps received restore files in dir
// until the reboot.
func NewState(dir string) *State { return &State{dir: dir} }

// PendingReboot reports whether a restore waits for a reboot.
func (s *State) PendingReboot() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending != nil
}

// Reboot applies a pending restore to contentDir ("the phone reboots").
func (s *State) Reboot(contentDir string) error {
	s.mu.Lock()
	p := s.pending
	s.pending = nil
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	defer os.RemoveAll(p.dir)
	return applyStaged(contentDir, p)
}

// applyStaged applies p and then its follow-up.
func applyStaged(contentDir string, p *staged) error {
	if err := apply(contentDir, p); err != nil {
		return err
	}
	if p.after != nil {
		return p.after()
	}
	return nil
}

// systemDomains are skipped unless RestoreSystemFiles (§2.2.1).
var systemDomains = map[string]bool{
	"RootDomain": true, "SystemPreferencesDomain": true, "KeychainDomain": true, "WirelessDomain": true,
	"ManagedPreferencesDomain": true, "DatabaseDomain": true, "NetworkDomain": true, "InstallDomain": true,
}

// restore runs the device side of a restore (§7.2, §9).
func (a *agent) restore(req map[string]any) error {
	t, _ := req["TargetIdentifier"].(string)
	s, _ := req["SourceIdentifier"].(string)
	if s == "" {
		s = t
	}
	opts, _ := req["Options"].(map[string]any)
	boolOpt := func(k string, def bool) bool {
		if v, ok := opts[k].(bool); ok {
			return v
		}
		return def
	}
	password, _ := opts["Password"].(string)
	if a.cfg.State != nil && a.cfg.State.PendingReboot() {
		return a.finish(102, "A restore is pending: reboot the device first")
	}
	got, err := a.download(s+"/Status.plist", s+"/Manifest.plist", s+"/Manifest.db", s+"/Info.plist")
	if err != nil {
		return err
	}
	// Status (§7.2 step 2).
	sb, ok := got[s+"/Status.plist"]
	if !ok {
		return a.finish(204, "No status exists in backup")
	}
	st, err := backupfmt.ParseStatus(sb)
	if err != nil {
		return a.finish(205, "Invalid status")
	}
	if v, err := strconv.ParseFloat(st.Version, 64); err != nil || v < 2.4 || v >= 4.0 {
		return a.finish(203, "Unsupported status version")
	}
	if !st.Finished() {
		return a.finish(205, "Invalid snapshot state")
	}
	if c := a.cfg.Faults.FinalError; c != 0 {
		return a.finish(int64(c), errorTexts[c])
	}
	mf, err := backupfmt.ParseManifest(got[s+"/Manifest.plist"])
	if err != nil {
		return a.finish(205, "Error reading backup properties")
	}
	if _, ok := got[s+"/"+manifestDBName]; !ok {
		// No Manifest.db: an iOS 5–9 backup keeps Manifest.mbdb (§7.2 step 1).
		more, err := a.download(s + "/" + manifestMBDBName)
		if err != nil {
			return err
		}
		maps.Copy(got, more)
	}
	// Compatibility (§7.2 step 3): skipped when Info.plist is missing.
	if ib, ok := got[s+"/Info.plist"]; ok && a.cfg.Lockdown.ProductVersion != "" {
		if info, err := backupfmt.ParseInfo(ib); err == nil && newer(info.ProductVersion, a.cfg.Lockdown.ProductVersion) {
			return a.finish(203, "Backup is from an incompatible OS version")
		}
	}
	// Encryption (§7.2 step 4): the backup's own keybag is unlocked with
	// the request's password before anything else happens.
	db, flat, _ := manifestBytes(got, s)
	a.restoreFlat = flat
	var cr *cryptor
	var kek []byte
	if mf.IsEncrypted {
		var code int64
		var desc string
		if cr, kek, code, desc = unlockBackup(mf, password); code != 0 {
			return a.finish(code, desc)
		}
		if db, err = cr.decryptDB(db, mf.ManifestKey); err != nil {
			return a.finish(205, "Error reading backup manifest")
		}
	}
	rows, err := a.readRows(db)
	if err != nil {
		return a.finish(205, "Error reading backup manifest")
	}
	for _, r := range rows {
		if strings.Contains(r.Domain, "/") || strings.Contains(r.Domain, "..") || r.Domain == "" {
			return a.finish(205, "Domain name cannot contain a slash") // pitfall 16
		}
		if bad(r.RelativePath) || (r.Type() == backupfmt.FlagSymlink && r.File == nil) {
			return a.finish(205, "Invalid relative path")
		}
	}
	// Free space on the device (§7.2 step 5).
	if a.cfg.Faults.DeviceFull {
		return a.finish(106, errRestoreNoSpace)
	}
	// Copy of the target's previous backup (§7.2 step 6).
	if !boolOpt("RestoreDontCopyBackup", false) {
		if err := a.copyBackup(t); err != nil {
			return err
		}
	}
	// Content (§7.2 step 7), verified like "verifying backup contents".
	base := a.cfg.WorkDir
	if a.cfg.State != nil && a.cfg.State.dir != "" {
		base = a.cfg.State.dir
	}
	dir, err := os.MkdirTemp(base, "restore-*")
	if err != nil {
		return fmt.Errorf("backupagent: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(dir)
		}
	}()
	code, desc, err := a.fetchContent(s, rows, dir, cr)
	if err != nil {
		return err
	}
	if code != 0 {
		return a.finish(code, desc)
	}
	p := &staged{dir: dir, items: rows, remove: boolOpt("RemoveItemsNotRestored", true), system: boolOpt("RestoreSystemFiles", false)}
	if cr != nil {
		enc := a.enc
		p.after = func() error { return enc.adopt(password, cr.kbBytes, kek, cr.kb, cr.keys) }
	}
	if boolOpt("RestoreShouldReboot", true) || a.cfg.State == nil {
		if err := applyStaged(a.cfg.ContentDir, p); err != nil {
			return a.finish(100, err.Error())
		}
		return a.finish(0, "")
	}
	keep = true
	a.cfg.State.mu.Lock()
	a.cfg.State.pending = p
	a.cfg.State.mu.Unlock()
	return a.finish(0, "")
}

func bad(rel string) bool {
	if strings.HasPrefix(rel, "/") || strings.ContainsRune(rel, 0) {
		return true
	}
	for _, c := range strings.Split(rel, "/") {
		if c == ".." {
			return true
		}
	}
	return false
}

// newer reports whether version a is newer than b ("18.0" > "17.5.1").
func newer(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x > y
		}
	}
	return false
}

func (a *agent) readRows(b []byte) ([]backupfmt.Record, error) {
	if len(b) == 0 {
		return nil, errors.New("backupagent: no Manifest.db")
	}
	if isMBDB(b) {
		return decodeMBDB(b)
	}
	p := filepath.Join(a.cfg.WorkDir, "restore-Manifest.db")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return nil, fmt.Errorf("backupagent: %w", err)
	}
	defer os.Remove(p)
	db, err := backupfmt.OpenManifestDB(p)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var out []backupfmt.Record
	err = db.Each(func(r backupfmt.Record) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// copyBackup duplicates the target's folder on the host when it exists
// (§7.2 step 6): CopyItem T → T-date, then a new Info.plist into the copy.
func (a *agent) copyBackup(t string) error {
	got, err := a.download(t + "/Info.plist")
	if err != nil {
		return err
	}
	ib, ok := got[t+"/Info.plist"]
	if !ok {
		return nil
	}
	if _, err := a.request(devicelink.MsgGetFreeDiskSpace, map[string]any{}, a.pct, uint64(0)); err != nil {
		return err
	}
	stamp := a.cfg.Now().UTC().Format("20060102-150405")
	dst := t + "-" + stamp
	if st, err := a.request(devicelink.MsgCopyItem, t, dst, map[string]any{}, a.pct, uint64(0)); err != nil {
		return err
	} else if st.Code != 0 {
		return nil // the device skips the copy when it fails
	}
	info, err := backupfmt.ParseInfo(ib)
	if err != nil {
		return nil
	}
	info.TargetIdentifier = dst
	info.DisplayName = info.DeviceName + " - " + stamp
	b, err := info.Marshal()
	if err != nil {
		return fmt.Errorf("backupagent: %w", err)
	}
	_, _, err = a.upload([]upFile{{dev: "Info.plist", host: dst + "/Info.plist", data: b}})
	return err
}

// fetchContent downloads every file row in batches into dir and checks it
// against the manifest (size, digest). It returns a non-zero MBError code
// for a backup the phone refuses.
// Content of an encrypted backup (cr != nil) is received as ciphertext,
// then decrypted with its file key and checked as plaintext (§6.4).
func (a *agent) fetchContent(s string, rows []backupfmt.Record, dir string, cr *cryptor) (int64, string, error) {
	var files []backupfmt.Record
	for _, r := range rows {
		if r.Type() == backupfmt.FlagFile {
			files = append(files, r)
		}
	}
	n := 0
	for i := 0; i < len(files); i += a.cfg.BatchSize {
		batch := files[i:min(i+a.cfg.BatchSize, len(files))]
		list := make([]any, len(batch))
		byName := map[string]backupfmt.Record{}
		for j, r := range batch {
			list[j] = contentPath(s, r.FileID, a.restoreFlat)
			byName[list[j].(string)] = r
		}
		a.pct = 10 + 80*float64(i)/float64(len(files))
		if err := a.dl.Write(devicelink.MsgDownloadFiles, list, map[string]any{}, a.pct, uint64(0)); err != nil {
			return 0, "", fmt.Errorf("backupagent: %w", err)
		}
		failed := false
		r := a.dl.Stream()
		for {
			name, end, err := devicelink.ReadName(r)
			if err != nil {
				return 0, "", fmt.Errorf("backupagent: %w", err)
			}
			if end {
				break
			}
			rec, ok := byName[name]
			if !ok || !backupfmt.ValidFileID(rec.FileID) {
				return 0, "", fmt.Errorf("backupagent: host sent unrequested %q", name)
			}
			n++
			dst := filepath.Join(dir, rec.FileID)
			recv := dst
			if cr != nil {
				recv = dst + ".enc"
			}
			f, err := os.Create(recv)
			if err != nil {
				return 0, "", fmt.Errorf("backupagent: %w", err)
			}
			h := sha1.New()
			res, err := devicelink.ReceiveFile(r, io.MultiWriter(f, h))
			f.Close()
			if err != nil {
				return 0, "", fmt.Errorf("backupagent: %w", err)
			}
			if n == a.cfg.Faults.DropMidFile {
				a.conn.Close()
				return 0, "", errDropped
			}
			size, sum := res.Bytes, h.Sum(nil)
			stored := sum // SHA-1 of the bytes as stored (ciphertext when encrypted)
			ok = res.Code == devicelink.CodeSuccess && res.WriteErr == nil && rec.File != nil
			if ok && cr != nil {
				size, sum, ok = decryptReceived(cr, rec.File, recv, dst)
			}
			// Whether an encrypted file's Digest covers plaintext or
			// ciphertext is open (§10 question 5): either is accepted.
			switch {
			case !ok:
				failed = true
			case size != rec.File.Size:
				failed = true
			case len(rec.File.Digest) == sha1.Size && !bytes.Equal(sum, rec.File.Digest) && !bytes.Equal(stored, rec.File.Digest):
				failed = true
			}
		}
		if _, err := a.readStatus(); err != nil {
			return 0, "", err
		}
		if failed {
			return 205, "Multiple errors downloading files", nil
		}
	}
	return 0, "", nil
}

// apply writes a verified restore into the content tree ("reboot").
func apply(contentDir string, p *staged) error {
	keep := map[string]bool{}
	rows := append([]backupfmt.Record(nil), p.items...)
	sort.Slice(rows, func(i, j int) bool { return len(rows[i].RelativePath) < len(rows[j].RelativePath) })
	for _, r := range rows {
		if systemDomains[r.Domain] && !p.system {
			continue
		}
		rel := path.Join(r.Domain, r.RelativePath)
		keep[rel] = true
		dst := filepath.Join(contentDir, filepath.FromSlash(rel))
		switch r.Type() {
		case backupfmt.FlagDirectory:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case backupfmt.FlagSymlink:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			_ = os.RemoveAll(dst)
			if err := os.Symlink(r.File.Target, dst); err != nil {
				return err
			}
		case backupfmt.FlagFile:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			_ = os.RemoveAll(dst)
			if err := os.Rename(filepath.Join(p.dir, r.FileID), dst); err != nil {
				return err
			}
		}
	}
	if !p.remove {
		return nil
	}
	// RemoveItemsNotRestored: drop what the backup does not have, within
	// the domains the restore touched (system domains only with System).
	var stale []string
	err := filepath.WalkDir(contentDir, func(p2 string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(contentDir, p2)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		dom, _, _ := strings.Cut(rel, "/")
		if systemDomains[dom] && !p.system {
			return filepath.SkipDir
		}
		if !keep[rel] {
			stale = append(stale, p2)
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, s := range stale {
		if err := os.RemoveAll(s); err != nil {
			return err
		}
	}
	return nil
}

// decryptReceived decrypts a received ciphertext file into dst and removes
// it; ok is false when the key or the ciphertext is bad.
func decryptReceived(cr *cryptor, f *backupfmt.MBFile, src, dst string) (int64, []byte, bool) {
	defer os.Remove(src)
	key, err := cr.fileKey(f)
	if err != nil {
		return 0, nil, false
	}
	n, sum, err := decryptFile(src, dst, key)
	return n, sum, err == nil
}
