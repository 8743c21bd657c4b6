package mobilebackup2

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/snapshot"
)

// verifier checks a finished run before it may become the current version
// (issue 7 item 4): Status.plist finished, no Snapshot/ left, every
// Manifest.db file row present on disk with the declared size and digest,
// every received file still as received. It also builds the checksum record.
type verifier struct {
	root     *os.Root
	rootDir  string
	udid     string
	received *recvTable
	base     *snapshot.Version
	hash     bool
	progress func(Event)
	ev       Event
	// password checks an encrypted backup's decrypted content; tempDir
	// receives its decrypted Manifest.db while checking.
	password, tempDir string
}

type verifySummary struct {
	problems []FileProblem
	warnings []string
	files    int
	full     bool
}

func (v *verifier) problem(s *verifySummary, p, what string) {
	s.problems = append(s.problems, FileProblem{Path: p, Problem: what})
}

func (v *verifier) run() (*snapshot.Record, *verifySummary, error) {
	s := &verifySummary{}
	u := v.udid
	// Status.plist: the phone's own "finished" marker (client-needs §4.9).
	if b, err := v.root.ReadFile(u + "/Status.plist"); err != nil {
		v.problem(s, u+"/Status.plist", "missing or unreadable: "+err.Error())
	} else if st, err := backupfmt.ParseStatus(b); err != nil {
		v.problem(s, u+"/Status.plist", err.Error())
	} else {
		s.full = st.IsFullBackup
		if st.SnapshotState != backupfmt.SnapshotFinished {
			v.problem(s, u+"/Status.plist", fmt.Sprintf("SnapshotState is %q, not finished", st.SnapshotState))
		}
	}
	if _, err := v.root.Lstat(u + "/Snapshot"); err == nil {
		v.problem(s, u+"/Snapshot", "staging directory left behind (§4.5)")
	}
	var mf *backupfmt.Manifest
	if b, err := v.root.ReadFile(u + "/Manifest.plist"); err != nil {
		v.problem(s, u+"/Manifest.plist", "missing or unreadable: "+err.Error())
	} else if m, err := backupfmt.ParseManifest(b); err != nil {
		v.problem(s, u+"/Manifest.plist", err.Error())
	} else {
		mf = m
	}

	rec := &snapshot.Record{FullBackup: s.full, Verified: v.hash, Files: map[string]snapshot.FileSum{}}
	if err := v.checkReceived(s); err != nil {
		return nil, nil, err
	}
	if v.hash {
		if err := v.sumTree(rec); err != nil {
			return nil, nil, err
		}
	}
	if _, err := v.root.Lstat(u + "/Manifest.db"); err != nil {
		if v.hasMBDB() { // an iOS 5–9 phone (§5.7)
			if err := v.checkMBDB(s, rec, mf); err != nil {
				return nil, nil, err
			}
			return rec, s, nil
		}
		v.problem(s, u+"/Manifest.db", "missing: "+err.Error())
		return rec, s, nil
	}
	if mf != nil && mf.IsEncrypted {
		if !v.hash {
			return rec, s, nil
		}
		if err := v.checkEncrypted(s, mf); err != nil {
			return nil, nil, err
		}
		return rec, s, nil
	}
	if v.hash {
		if err := v.checkManifest(s, rec); err != nil {
			return nil, nil, err
		}
	}
	return rec, s, nil
}

// checkReceived compares every file received in this run with its size on
// disk (a short write or a later change shows up here).
func (v *verifier) checkReceived(s *verifySummary) error {
	var (
		found   []FileProblem
		lastErr error
	)
	v.received.each(func(k string, r recvFile) {
		fi, err := v.root.Lstat(k)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) { // else moved away or removed by the phone afterwards
				lastErr = err
			}
			return
		}
		if fi.Size() != r.size {
			found = append(found, FileProblem{Path: k, Problem: fmt.Sprintf("size on disk %d, received %d bytes", fi.Size(), r.size)})
		}
	})
	if lastErr != nil {
		return fmt.Errorf("mobilebackup2: verify: %w", lastErr)
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Path < found[j].Path })
	s.problems = append(s.problems, found...)
	return nil
}

// sumTree fills rec with the checksum of every regular file under <UDID>/:
// from this run's streaming hash, from the base version's record when the
// file is still the same inode, else by reading it.
func (v *verifier) sumTree(rec *snapshot.Record) error {
	var baseRoot string
	if v.base != nil && v.base.Record != nil {
		baseRoot = v.base.Path(v.udid)
	}
	top := filepath.Join(v.rootDir, v.udid)
	return filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("mobilebackup2: verify: %w", err)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(top, p)
		if err != nil {
			return fmt.Errorf("mobilebackup2: verify: %w", err)
		}
		// Clone: rel is a substring of p, and as a map key it would keep the
		// whole absolute path alive (a million of them at scale).
		rel = strings.Clone(filepath.ToSlash(rel))
		if r, ok := v.received.get(v.udid + "/" + rel); ok && r.hashed {
			rec.Files[rel] = snapshot.FileSum{Size: r.size, SHA1: hex.EncodeToString(r.sum[:])}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("mobilebackup2: verify: %w", err)
		}
		if baseRoot != "" {
			if bs, ok := v.base.Record.Files[rel]; ok {
				if bfi, err := os.Lstat(filepath.Join(baseRoot, filepath.FromSlash(rel))); err == nil && os.SameFile(fi, bfi) && bs.Size == fi.Size() {
					rec.Files[rel] = bs
					return nil
				}
			}
		}
		sum, n, err := hashFile(p)
		if err != nil {
			return err
		}
		v.ev.CurrentFile = v.udid + "/" + rel
		if v.progress != nil {
			v.progress(v.ev)
		}
		rec.Files[rel] = snapshot.FileSum{Size: n, SHA1: sum}
		return nil
	})
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, fmt.Errorf("mobilebackup2: verify: %w", err)
	}
	defer f.Close()
	h := sha1.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("mobilebackup2: verify: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// checkManifest checks every Manifest.db file row against the disk and the
// checksum record: present, declared size, digest where the row has one.
func (v *verifier) checkManifest(s *verifySummary, rec *snapshot.Record) error {
	db, err := backupfmt.OpenManifestDB(filepath.Join(v.rootDir, v.udid, "Manifest.db"))
	if err != nil {
		v.problem(s, v.udid+"/Manifest.db", err.Error())
		return nil
	}
	defer db.Close()
	err = db.Each(func(r backupfmt.Record) error {
		if r.Type() != backupfmt.FlagFile {
			return nil
		}
		s.files++
		rel := path.Join(r.FileID[:min(2, len(r.FileID))], r.FileID)
		p := v.udid + "/" + rel
		bad := func(what string) {
			s.problems = append(s.problems, FileProblem{Path: p, Domain: r.Domain, RelativePath: r.RelativePath, Problem: what})
		}
		if !backupfmt.ValidFileID(r.FileID) {
			bad("invalid fileID in Manifest.db")
			return nil
		}
		if r.File == nil {
			bad(fmt.Sprintf("Manifest.db row has no usable metadata: %v", r.FileErr))
			return nil
		}
		sum, ok := rec.Files[rel]
		if !ok {
			bad("missing (Manifest.db references it)")
			return nil
		}
		if sum.Size != r.File.Size {
			bad(fmt.Sprintf("size %d, Manifest.db says %d", sum.Size, r.File.Size))
			return nil
		}
		if len(r.File.Digest) == sha1.Size && hex.EncodeToString(r.File.Digest) != sum.SHA1 {
			bad(fmt.Sprintf("SHA-1 %s, Manifest.db says %x", sum.SHA1, r.File.Digest))
		}
		return nil
	})
	if err != nil {
		v.problem(s, v.udid+"/Manifest.db", "reading: "+err.Error())
	}
	return nil
}
