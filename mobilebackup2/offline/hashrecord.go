package offline

import (
	"path/filepath"
	"slices"
	"sync"

	"github.com/ibackup/ibackup/mobilebackup2/snapshot"
)

// HashRecord supplies known checksums of stored files, from our own
// snapshot store's verification record (mobilebackup2/snapshot). rel is the
// slash path relative to the backup folder ("ab/ab12…", "Manifest.db").
type HashRecord interface {
	Sum(rel string) (size int64, sha1hex string, ok bool)
}

// recordSums adapts our snapshot store's verification record
// (mobilebackup2/snapshot, owned by the backup engine) to HashRecord.
// Verify reads it as a stream, merged with the manifest in fileID order;
// Sum (random access) indexes it in memory on first use.
type recordSums struct {
	r    *snapshot.Record
	once sync.Once
	idx  map[string]snapshot.Entry
	err  error
}

// Sum implements HashRecord.
func (s *recordSums) Sum(rel string) (int64, string, bool) {
	s.once.Do(func() {
		s.idx = map[string]snapshot.Entry{}
		s.err = s.r.Each(func(e snapshot.Entry) error {
			s.idx[e.Path] = e
			return nil
		})
	})
	e, ok := s.idx[rel]
	if !ok {
		return 0, "", false
	}
	return e.Size, e.SumHex(), true
}

// RecordHashes returns r as a HashRecord.
func RecordHashes(r *snapshot.Record) HashRecord { return &recordSums{r: r} }

// findHashRecord loads the verification record kept beside the backup
// folder by our snapshot store (its header: the entries are streamed), or
// returns nil when there is none or it cannot be read (a verify of a
// foreign backup then relies on the manifest alone).
func findHashRecord(dir string) HashRecord {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil
	}
	r, _, err := snapshot.ReadRecordIn(filepath.Dir(real))
	if err != nil || (r.UDID != "" && r.UDID != filepath.Base(real)) {
		return nil
	}
	return &recordSums{r: r}
}

// recSum is what the hash record says about one file.
type recSum struct {
	size int64
	sha1 string
	ok   bool
}

// sumLookup finds record entries for the manifest walk: a cursor merged
// with the walk when the record streams and the walk is in fileID order,
// else the HashRecord's random access.
type sumLookup struct {
	hr  HashRecord
	cur *snapshot.Cursor
	err error
}

func (l *sumLookup) sum(rel string) recSum {
	switch {
	case l.cur != nil:
		e, ok, err := l.cur.Lookup(rel)
		if err != nil && l.err == nil {
			l.err = err
		}
		if ok {
			return recSum{e.Size, e.SumHex(), true}
		}
	case l.hr != nil:
		size, sum, ok := l.hr.Sum(rel)
		return recSum{size, sum, ok}
	}
	return recSum{}
}

// close releases the cursor and returns a record read error.
func (l *sumLookup) close() error {
	if l.cur != nil {
		l.cur.Close()
	}
	return l.err
}

// sumsOf looks up a few names at once (one pass over a streamed record).
func sumsOf(hr HashRecord, names []string) (map[string]recSum, error) {
	out := map[string]recSum{}
	rs, ok := hr.(*recordSums)
	if !ok {
		for _, n := range names {
			size, sum, ok := hr.Sum(n)
			out[n] = recSum{size, sum, ok}
		}
		return out, nil
	}
	cur, err := rs.r.NewCursor()
	if err != nil {
		return nil, err
	}
	l := &sumLookup{cur: cur}
	sorted := slices.Clone(names)
	slices.SortFunc(sorted, snapshot.ComparePaths)
	for _, n := range sorted {
		out[n] = l.sum(n)
	}
	return out, l.close()
}
