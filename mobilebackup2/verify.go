package mobilebackup2

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
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
	// sizeProblems are received files whose size on disk differs, found
	// by the tree walk (sumTree) for files under <UDID>/.
	sizeProblems []FileProblem
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

	if err := v.checkReceived(s); err != nil {
		return nil, nil, err
	}
	rec := &snapshot.Record{FullBackup: s.full, Verified: v.hash}
	_, dbErr := v.root.Lstat(u + "/Manifest.db")
	if v.hash {
		var m *manifestCheck
		if dbErr == nil && (mf == nil || !mf.IsEncrypted) {
			m = v.startManifestCheck(s)
		}
		var err error
		rec, err = v.sumTree(*rec, m)
		if m != nil {
			if err != nil {
				m.stop()
			} else {
				m.finish(s)
			}
		}
		if err != nil {
			return nil, nil, err
		}
		s.problems = append(s.problems, v.sizeProblems...)
	}
	if dbErr != nil {
		if v.hasMBDB() { // an iOS 5–9 phone (§5.7)
			if err := v.checkMBDB(s, rec, mf); err != nil {
				return nil, nil, err
			}
			return rec, s, nil
		}
		v.problem(s, u+"/Manifest.db", "missing: "+dbErr.Error())
		return rec, s, nil
	}
	if mf != nil && mf.IsEncrypted && v.hash {
		if err := v.checkEncrypted(s, mf); err != nil {
			return nil, nil, err
		}
	}
	return rec, s, nil
}

// checkReceived compares every file received in this run with its size on
// disk (a short write or a later change shows up here). When hashing, the
// tree walk of sumTree does this for the files under <UDID>/ with the stat
// it takes anyway (a million files at scale, issue 11).
func (v *verifier) checkReceived(s *verifySummary) error {
	var (
		found   []FileProblem
		lastErr error
	)
	walked := v.udid + "/"
	v.received.each(func(k string, r recvFile) {
		if v.hash && strings.HasPrefix(k, walked) {
			return
		}
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
