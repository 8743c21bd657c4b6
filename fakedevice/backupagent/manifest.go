package backupagent

// The previous backup's manifest and the new one (mobilebackup2-and-backup-
// format.md §4.2 step 2, §4.3 step 9, §5.5). An incremental backup starts
// from the previous Manifest.db the host sent back and applies only the
// changed rows (backupfmt.UpdateManifestDB), so its cost follows what
// changed, not the size of the phone.

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
)

// writeManifest returns the new manifest's bytes: the previous Manifest.db
// with the changed rows applied when there is one, else built from items.
func (a *agent) writeManifest(items []item, prev *previous, gone []string) ([]byte, error) {
	if a.cfg.MBDB {
		return encodeMBDB(items)
	}
	if prev != nil && prev.dbPath != "" {
		b, err := updateManifestDB(prev.dbPath, items, gone)
		if err == nil {
			return b, nil
		}
		// A previous database we cannot extend (foreign schema, damage):
		// build the whole manifest as a full backup does.
		a.log.Debug("backupagent: rebuilding Manifest.db", "err", err)
	}
	p := filepath.Join(a.cfg.WorkDir, "Manifest.db")
	w, err := backupfmt.CreateManifestDB(p)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		if err := w.Add(it.rec); err != nil {
			w.Abort()
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	defer os.Remove(p)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("backupagent: %w", err)
	}
	return b, nil
}

// updateManifestDB applies the difference between the previous rows (the
// database at path; items carry their previous row) and items to that
// database: new and changed rows are written, the rows gone from the phone
// deleted. It returns the resulting file's bytes (checkpointed, no WAL left).
func updateManifestDB(path string, items []item, gone []string) ([]byte, error) {
	w, err := backupfmt.UpdateManifestDB(path)
	if err != nil {
		return nil, fmt.Errorf("backupagent: %w", err)
	}
	if err := applyRows(w, items, gone); err != nil {
		w.Abort()
		return nil, fmt.Errorf("backupagent: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("backupagent: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("backupagent: update Manifest.db: %w", err)
	}
	return b, nil
}

// applyRows writes the changed rows through w.
func applyRows(w *backupfmt.ManifestWriter, items []item, gone []string) error {
	for i := range items {
		r := &items[i].rec
		if o := items[i].prev; o != nil && o.file != nil && o.flags == r.Flags && sameRow(o.file, r.File) {
			continue
		}
		if err := w.Add(*r); err != nil {
			return err
		}
	}
	for _, id := range gone {
		if err := w.Delete(id); err != nil {
			return err
		}
	}
	return nil
}

// sameRow reports whether two MBFile values encode the same blob.
func sameRow(a, b *backupfmt.MBFile) bool {
	return a.RelativePath == b.RelativePath && a.Target == b.Target &&
		a.LastModified == b.LastModified && a.LastStatusChange == b.LastStatusChange &&
		a.Birth == b.Birth && a.Size == b.Size && a.Mode == b.Mode &&
		a.UserID == b.UserID && a.GroupID == b.GroupID && a.InodeNumber == b.InodeNumber &&
		a.ProtectionClass == b.ProtectionClass && a.Flags == b.Flags &&
		string(a.Digest) == string(b.Digest) && string(a.EncryptionKey) == string(b.EncryptionKey) &&
		string(a.ExtendedAttributes) == string(b.ExtendedAttributes)
}
