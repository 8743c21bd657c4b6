package mobilebackup2

// Verification of an iOS 5–9 backup after a run: the phone wrote a
// Manifest.mbdb and keeps its files flat as <UDID>/<fileID>
// (mobilebackup2-and-backup-format.md §5.7, real-device-profile.md "iOS
// 9.3.6 backup"). Every file record of the mbdb is checked against the
// disk like a Manifest.db row (present, declared size, digest where the
// record has one); an encrypted backup is checked decrypted with the
// password, else by its stored sizes (§6.4).

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/keybag"
	"github.com/ibackup/ibackup/mobilebackup2/offline"
	"github.com/ibackup/ibackup/mobilebackup2/snapshot"
)

// manifestMBDB is the legacy manifest's file name (§5.7).
const manifestMBDB = "Manifest.mbdb"

// hasMBDB reports whether the run's folder holds a Manifest.mbdb.
func (v *verifier) hasMBDB() bool {
	_, err := v.root.Lstat(v.udid + "/" + manifestMBDB)
	return err == nil
}

// checkMBDB verifies an mbdb-era backup folder; s.files counts the content
// files checked. Nothing is checked when hashing is off (SkipVerify).
func (v *verifier) checkMBDB(s *verifySummary, rec *snapshot.Record, mf *backupfmt.Manifest) error {
	if !v.hash {
		return nil
	}
	encrypted := mf != nil && mf.IsEncrypted
	if !encrypted {
		return v.checkMBDBRows(s, rec, false)
	}
	if v.password == "" {
		s.warnings = append(s.warnings, "backup is encrypted and no password was given: only the stored sizes were checked, not the contents")
		return v.checkMBDBRows(s, rec, true)
	}
	rep, err := offline.Verify(filepath.Join(v.rootDir, v.udid), offline.VerifyOptions{
		Options:      offline.Options{Password: v.password, TempDir: v.tempDir},
		NoHashRecord: true,
	})
	if errors.Is(err, keybag.ErrWrongPassword) {
		s.warnings = append(s.warnings, "the given password does not unlock this backup: its contents were not checked")
		return v.checkMBDBRows(s, rec, true)
	}
	if err != nil {
		v.problem(s, v.udid+"/"+manifestMBDB, "cannot be read with the password: "+err.Error())
		return nil
	}
	s.files += int(rep.Files)
	for _, p := range rep.Problems {
		fp := FileProblem{Path: v.udid + "/" + p.Path, Problem: string(p.Kind) + ": " + p.Detail}
		if p.FileID != "" {
			fp.Path, fp.Domain, fp.RelativePath = v.udid+"/"+p.FileID, p.Domain, p.Path
		}
		s.problems = append(s.problems, fp)
	}
	return nil
}

// checkMBDBRows reads Manifest.mbdb and checks every file record against
// the checksum record of the tree. For an encrypted backup only the stored
// size is checked: whole AES blocks, at least the plaintext size.
func (v *verifier) checkMBDBRows(s *verifySummary, rec *snapshot.Record, encrypted bool) error {
	name := v.udid + "/" + manifestMBDB
	f, err := v.root.Open(name)
	if err != nil {
		v.problem(s, name, "unreadable: "+err.Error())
		return nil
	}
	defer f.Close()
	sums, err := flatSums(rec)
	if err != nil {
		return fmt.Errorf("mobilebackup2: verify: %w", err)
	}
	r, err := backupfmt.NewMBDBReader(f)
	if err != nil {
		v.problem(s, name, err.Error())
		return nil
	}
	for {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			v.problem(s, name, "reading: "+err.Error())
			return nil
		}
		if row.Type() != backupfmt.FlagFile {
			continue
		}
		s.files++
		bad := func(what string) {
			s.problems = append(s.problems, FileProblem{Path: v.udid + "/" + row.FileID,
				Domain: row.Domain, RelativePath: row.RelativePath, Problem: what})
		}
		sum, ok := sums.get(row.FileID)
		switch {
		case !ok:
			bad("missing (Manifest.mbdb references it)")
		case encrypted:
			if sum.size%aesBlock != 0 || sum.size < row.File.Size {
				bad(fmt.Sprintf("encrypted size %d does not hold %d bytes in whole AES blocks (truncated?)", sum.size, row.File.Size))
			}
		case sum.size != row.File.Size:
			bad(fmt.Sprintf("size %d, Manifest.mbdb says %d", sum.size, row.File.Size))
		case len(row.File.Digest) == sha1.Size && !bytes.Equal(row.File.Digest, sum.sha1[:]):
			bad(fmt.Sprintf("SHA-1 %x, Manifest.mbdb says %x", sum.sha1, row.File.Digest))
		}
	}
}

// flatSum is one flat <UDID>/<fileID> file of the record.
type flatSum struct {
	size int64
	sha1 [sha1.Size]byte
}

// flatIndex maps fileIDs to their record entries. The mbdb lists files in
// its own order, not sorted, so the record cannot be merge-joined; an
// iOS 5–9 backup is indexed compactly instead (48 bytes a file).
type flatIndex map[[sha1.Size]byte]flatSum

func (x flatIndex) get(fileID string) (flatSum, bool) {
	var k [sha1.Size]byte
	if len(fileID) != 2*sha1.Size {
		return flatSum{}, false
	}
	if _, err := hex.Decode(k[:], []byte(fileID)); err != nil {
		return flatSum{}, false
	}
	s, ok := x[k]
	return s, ok
}

// flatSums indexes the record's top-level files named by a fileID.
func flatSums(rec *snapshot.Record) (flatIndex, error) {
	x := flatIndex{}
	err := rec.Each(func(e snapshot.Entry) error {
		if !backupfmt.ValidFileID(e.Path) {
			return nil
		}
		var k [sha1.Size]byte
		if _, err := hex.Decode(k[:], []byte(e.Path)); err != nil {
			return nil
		}
		x[k] = flatSum{size: e.Size, sha1: e.SHA1}
		return nil
	})
	return x, err
}
