package offline

import (
	"path/filepath"

	"github.com/ibackup/ibackup/mobilebackup2/snapshot"
)

// recordSums adapts our snapshot store's verification record
// (mobilebackup2/snapshot, owned by the backup engine) to HashRecord.
type recordSums struct{ r *snapshot.Record }

// Sum implements HashRecord.
func (s recordSums) Sum(rel string) (int64, string, bool) {
	fs, ok := s.r.Files[rel]
	return fs.Size, fs.SHA1, ok
}

// RecordHashes returns r as a HashRecord.
func RecordHashes(r *snapshot.Record) HashRecord { return recordSums{r} }

// findHashRecord loads the verification record kept beside the backup
// folder by our snapshot store, or returns nil when there is none or it
// cannot be read (a verify of a foreign backup then relies on the manifest
// alone).
func findHashRecord(dir string) HashRecord {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil
	}
	r, err := snapshot.ReadRecord(filepath.Join(filepath.Dir(real), snapshot.RecordName))
	if err != nil || (r.UDID != "" && r.UDID != filepath.Base(real)) {
		return nil
	}
	return recordSums{r}
}

// optionalRecord is a possibly absent HashRecord.
type optionalRecord struct{ HashRecord }

func (o optionalRecord) sumOf(rel string) (int64, string, bool) {
	if o.HashRecord == nil {
		return 0, "", false
	}
	return o.Sum(rel)
}

// HashRecord supplies known checksums of stored files, from our own
// snapshot store's verification record (mobilebackup2/snapshot). rel is the
// slash path relative to the backup folder ("ab/ab12…", "Manifest.db").
type HashRecord interface {
	Sum(rel string) (size int64, sha1hex string, ok bool)
}
