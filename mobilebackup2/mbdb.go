package mobilebackup2

// Verification of an iOS 5–9 backup after a run: the phone wrote a
// Manifest.mbdb and keeps its files flat as <UDID>/<fileID>
// (mobilebackup2-and-backup-format.md §5.7, real-device-profile.md "iOS
// 9.3.6 backup"). Every file record of the mbdb is checked against the
// disk like a Manifest.db row (present, declared size, digest where the
// record has one); an encrypted backup is checked decrypted with the
// password, else by its stored sizes (§6.4).

import (
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
		sum, ok := rec.Files[row.FileID]
		switch {
		case !ok:
			bad("missing (Manifest.mbdb references it)")
		case encrypted:
			if sum.Size%aesBlock != 0 || sum.Size < row.File.Size {
				bad(fmt.Sprintf("encrypted size %d does not hold %d bytes in whole AES blocks (truncated?)", sum.Size, row.File.Size))
			}
		case sum.Size != row.File.Size:
			bad(fmt.Sprintf("size %d, Manifest.mbdb says %d", sum.Size, row.File.Size))
		case len(row.File.Digest) == sha1.Size && hex.EncodeToString(row.File.Digest) != sum.SHA1:
			bad(fmt.Sprintf("SHA-1 %s, Manifest.mbdb says %x", sum.SHA1, row.File.Digest))
		}
	}
}
