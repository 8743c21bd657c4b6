package mobilebackup2

// Verification of an encrypted backup after a run (issue 8 item 3). With
// the password the whole backup is checked decrypted through the offline
// package (keybag unlock, Manifest.db, every file's key, padding, size and
// digest, mobilebackup2-and-backup-format.md §6.2–§6.4). Without it only
// what the ciphertext shows is checked: the keybag parses, Manifest.db and
// every stored file are whole AES blocks, and the ManifestKey has its size.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/keybag"
	"github.com/ibackup/ibackup/mobilebackup2/offline"
)

// aesBlock is the AES block size; AES-CBC with PKCS#7 stores whole blocks
// (§6.4).
const aesBlock = 16

// checkEncrypted verifies an encrypted backup folder; s.files counts the
// content files checked.
func (v *verifier) checkEncrypted(s *verifySummary, mf *backupfmt.Manifest) error {
	if v.password != "" {
		return v.checkDecrypted(s)
	}
	s.warnings = append(s.warnings, "backup is encrypted and no password was given: only the stored sizes were checked, not the contents")
	return v.checkCiphertext(s, mf)
}

// checkDecrypted runs offline.Verify with the password. A wrong password
// is a warning, not a failure: the phone's backup is fine, it just cannot
// be checked with that password.
func (v *verifier) checkDecrypted(s *verifySummary) error {
	dir := filepath.Join(v.rootDir, v.udid)
	rep, err := offline.Verify(dir, offline.VerifyOptions{
		Options:      offline.Options{Password: v.password, TempDir: v.tempDir},
		NoHashRecord: true,
	})
	if errors.Is(err, keybag.ErrWrongPassword) {
		s.warnings = append(s.warnings, "the given password does not unlock this backup: its contents were not checked")
		return v.checkCiphertext(s, nil)
	}
	if err != nil {
		v.problem(s, v.udid+"/Manifest.db", "cannot be read with the password: "+err.Error())
		return nil
	}
	s.files += int(rep.Files)
	for _, p := range rep.Problems {
		path := v.udid + "/" + p.Path
		if p.FileID != "" && len(p.FileID) > 2 {
			path = v.udid + "/" + p.FileID[:2] + "/" + p.FileID
		}
		what := string(p.Kind) + ": " + p.Detail
		s.problems = append(s.problems, FileProblem{Path: path, Domain: p.Domain, RelativePath: relOf(p), Problem: what})
	}
	return nil
}

func relOf(p offline.Problem) string {
	if p.FileID == "" {
		return ""
	}
	return p.Path
}

// sqliteMagic starts a plain SQLite file (an iOS 10.0–10.1 encrypted
// backup keeps Manifest.db plain, §6.3).
var sqliteMagic = []byte("SQLite format 3\x00")

// checkCiphertext checks what an encrypted backup shows without its
// password. mf may be nil (then it is read here).
func (v *verifier) checkCiphertext(s *verifySummary, mf *backupfmt.Manifest) error {
	u := v.udid
	if mf == nil {
		b, err := v.root.ReadFile(u + "/Manifest.plist")
		if err != nil {
			return nil // reported by run
		}
		if mf, err = backupfmt.ParseManifest(b); err != nil {
			return nil
		}
	}
	if _, err := keybag.Parse(mf.BackupKeyBag); err != nil {
		v.problem(s, u+"/Manifest.plist", "BackupKeyBag: "+err.Error())
	}
	db, err := v.root.Open(u + "/Manifest.db")
	if err != nil {
		return nil // reported by run
	}
	head := make([]byte, len(sqliteMagic))
	_, _ = io.ReadFull(db, head)
	st, err := db.Stat()
	db.Close()
	if err != nil {
		return fmt.Errorf("mobilebackup2: verify: %w", err)
	}
	if !bytes.Equal(head, sqliteMagic) {
		if len(mf.ManifestKey) != keybag.WrappedKeyLen {
			v.problem(s, u+"/Manifest.plist", fmt.Sprintf("ManifestKey has %d bytes, want %d", len(mf.ManifestKey), keybag.WrappedKeyLen))
		}
		if st.Size() == 0 || st.Size()%aesBlock != 0 {
			v.problem(s, u+"/Manifest.db", fmt.Sprintf("encrypted size %d is not whole AES blocks", st.Size()))
		}
	}
	for i := 0; i < 256; i++ {
		d := fmt.Sprintf("%s/%02x", u, i)
		f, err := v.root.Open(d)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("mobilebackup2: verify: %w", err)
		}
		ents, err := f.ReadDir(-1)
		f.Close()
		if err != nil {
			return fmt.Errorf("mobilebackup2: verify: %w", err)
		}
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				return fmt.Errorf("mobilebackup2: verify: %w", err)
			}
			s.files++
			// Zero bytes is accepted: whether an empty file is stored empty
			// or as one padding block is open (§10 question 6).
			if fi.Size()%aesBlock != 0 {
				v.problem(s, d+"/"+e.Name(), fmt.Sprintf("encrypted size %d is not whole AES blocks (truncated?)", fi.Size()))
			}
		}
	}
	return nil
}
