package mobilebackup2

// Checking Manifest.db against the tree (issue 7 item 4): every file row
// must be on disk with the declared size and, where the row has one, the
// digest (mobilebackup2-and-backup-format.md §5.5). Rows are read in fileID
// order on their own goroutine (SQLite and the MBFile decode) and
// merge-joined with the checksum record while sumTree walks the tree: the
// content paths <xx>/<fileID> sort the same way (snapshot.ComparePaths), so
// neither side is held in memory and the two halves overlap (issue 11).

import (
	"context"
	"crypto/sha1"
	"fmt"
	"path/filepath"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/snapshot"
)

// rowCheck is one decoded Manifest.db file row waiting for its record entry.
type rowCheck struct {
	rel                  string // <xx>/<fileID>
	domain, relativePath string
	size                 int64
	digest               [sha1.Size]byte
	hasDigest            bool
}

// manifestCheck reads Manifest.db rows for the merge.
type manifestCheck struct {
	v      *verifier
	rows   chan rowCheck
	cancel context.CancelFunc
	done   chan struct{}
	// Set by the reader before done closes.
	files    int
	problems []FileProblem
	readErr  string
	// Merge state (sumTree's goroutine).
	cur      rowCheck
	have     bool
	closed   bool
	found    []FileProblem
	finished bool
}

// startManifestCheck opens Manifest.db and starts reading it; nil (with
// the problem recorded) when it cannot be opened.
func (v *verifier) startManifestCheck(s *verifySummary) *manifestCheck {
	db, err := backupfmt.OpenManifestDB(filepath.Join(v.rootDir, v.udid, "Manifest.db"))
	if err != nil {
		v.problem(s, v.udid+"/Manifest.db", err.Error())
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &manifestCheck{v: v, rows: make(chan rowCheck, 1024), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		defer close(m.rows)
		defer db.Close()
		m.read(ctx, db)
	}()
	return m
}

// read sends every valid file row in fileID order; rows that can be
// judged alone (bad fileID, undecodable metadata) become problems here.
func (m *manifestCheck) read(ctx context.Context, db *backupfmt.ManifestDB) {
	rows, err := db.RowsByFileID(ctx)
	if err != nil {
		m.readErr = err.Error()
		return
	}
	defer rows.Close()
	u := m.v.udid
	for rows.Next() {
		row := rows.Row()
		if row.Type() != backupfmt.FlagFile {
			continue
		}
		m.files++
		id := string(row.FileID)
		if !backupfmt.ValidFileID(id) {
			m.problems = append(m.problems, FileProblem{Path: u + "/" + id, Domain: string(row.Domain),
				RelativePath: string(row.RelativePath), Problem: "invalid fileID in Manifest.db"})
			continue
		}
		r := row.Decode()
		rel := id[:2] + "/" + id
		if r.File == nil {
			m.problems = append(m.problems, FileProblem{Path: u + "/" + rel, Domain: r.Domain, RelativePath: r.RelativePath,
				Problem: fmt.Sprintf("Manifest.db row has no usable metadata: %v", r.FileErr)})
			continue
		}
		c := rowCheck{rel: rel, domain: r.Domain, relativePath: r.RelativePath, size: r.File.Size}
		if len(r.File.Digest) == sha1.Size {
			c.digest, c.hasDigest = [sha1.Size]byte(r.File.Digest), true
		}
		select {
		case m.rows <- c:
		case <-ctx.Done():
			return
		}
	}
	if err := rows.Err(); err != nil && ctx.Err() == nil {
		m.readErr = err.Error()
	}
}

// next makes the next row current; false at the end.
func (m *manifestCheck) next() bool {
	if m.have {
		return true
	}
	if m.closed {
		return false
	}
	m.cur, m.have = <-m.rows
	m.closed = !m.have
	return m.have
}

// visit merges one record entry (in ascending order) with the rows.
func (m *manifestCheck) visit(e snapshot.Entry) {
	for m.next() {
		c := snapshot.ComparePaths(m.cur.rel, e.Path)
		if c > 0 {
			return
		}
		m.have = false
		if c < 0 {
			m.bad(m.cur, "missing (Manifest.db references it)")
			continue
		}
		switch {
		case e.Size != m.cur.size:
			m.bad(m.cur, fmt.Sprintf("size %d, Manifest.db says %d", e.Size, m.cur.size))
		case m.cur.hasDigest && m.cur.digest != e.SHA1:
			m.bad(m.cur, fmt.Sprintf("SHA-1 %x, Manifest.db says %x", e.SHA1, m.cur.digest))
		}
	}
}

func (m *manifestCheck) bad(c rowCheck, what string) {
	m.found = append(m.found, FileProblem{Path: m.v.udid + "/" + c.rel, Domain: c.domain, RelativePath: c.relativePath, Problem: what})
}

// finish reports the rows no file matched and adds the findings to s.
func (m *manifestCheck) finish(s *verifySummary) {
	for m.next() {
		m.have = false
		m.bad(m.cur, "missing (Manifest.db references it)")
	}
	<-m.done
	m.cancel()
	m.finished = true
	s.files += m.files
	s.problems = append(s.problems, m.problems...)
	s.problems = append(s.problems, m.found...)
	if m.readErr != "" {
		m.v.problem(s, m.v.udid+"/Manifest.db", "reading: "+m.readErr)
	}
}

// stop ends the reader early (sumTree failed); safe after finish.
func (m *manifestCheck) stop() {
	if m.finished {
		return
	}
	m.cancel()
	for range m.rows { // let the reader see the cancel and exit
	}
	<-m.done
	m.finished = true
}
