package mobilebackup2

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
)

// recvFile is what we know about a file received in this run.
type recvFile struct {
	size   int64
	sum    [sha1.Size]byte
	hashed bool
}

// recvKey names a received content file compactly: almost every path the
// phone uploads is <top>/<xx>/<fileID> or <top>/Snapshot/<xx>/<fileID>
// (mobilebackup2-and-backup-format.md §4.3 steps 8 and 11), so the table
// keeps 24 bytes per file instead of the path string (a million files at
// scale, issue 11).
type recvKey struct {
	top    uint16 // index into recvTable.tops
	staged bool   // under <top>/Snapshot/
	id     [sha1.Size]byte
}

// recvTable is the engine's record of the files received in this run,
// keyed by slash path relative to the backup root. Paths that are not
// content files (Manifest.db, Status.plist, odd names) go to a plain map.
type recvTable struct {
	ids   map[recvKey]recvFile
	other map[string]recvFile
	tops  []string
	topIx map[string]uint16
}

func newRecvTable() *recvTable {
	return &recvTable{ids: map[recvKey]recvFile{}, other: map[string]recvFile{}, topIx: map[string]uint16{}}
}

// key returns the compact key of p; ok=false when p is not a content path.
// add registers an unknown top directory.
func (t *recvTable) key(p string, add bool) (recvKey, bool) {
	var k recvKey
	top, rest, ok := strings.Cut(p, "/")
	if !ok {
		return k, false
	}
	if s, ok := strings.CutPrefix(rest, "Snapshot/"); ok {
		rest, k.staged = s, true
	}
	// <xx>/<40 lowercase hex>, xx the first two characters of the ID.
	if len(rest) != 3+2*sha1.Size || rest[2] != '/' || rest[:2] != rest[3:5] || !isLowerHex(rest[3:]) {
		return k, false
	}
	if _, err := hex.Decode(k.id[:], []byte(rest[3:])); err != nil {
		return k, false
	}
	i, known := t.topIx[top]
	if !known {
		if !add || len(t.tops) >= 1<<16-1 {
			return k, false
		}
		i = uint16(len(t.tops))
		t.tops = append(t.tops, strings.Clone(top))
		t.topIx[t.tops[i]] = i
	}
	k.top = i
	return k, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// path rebuilds the slash path of k.
func (t *recvTable) path(k recvKey) string {
	id := hex.EncodeToString(k.id[:])
	var b strings.Builder
	b.Grow(len(t.tops[k.top]) + 10 + 3 + len(id))
	b.WriteString(t.tops[k.top])
	b.WriteByte('/')
	if k.staged {
		b.WriteString("Snapshot/")
	}
	b.WriteString(id[:2])
	b.WriteByte('/')
	b.WriteString(id)
	return b.String()
}

// put records p as received.
func (t *recvTable) put(p string, r recvFile) {
	if k, ok := t.key(p, true); ok {
		t.ids[k] = r
		return
	}
	t.other[strings.Clone(p)] = r
}

// get returns what was received at p.
func (t *recvTable) get(p string) (recvFile, bool) {
	if k, ok := t.key(p, false); ok {
		r, ok := t.ids[k]
		return r, ok
	}
	r, ok := t.other[p]
	return r, ok
}

// has reports whether p was received.
func (t *recvTable) has(p string) bool {
	_, ok := t.get(p)
	return ok
}

// del forgets p (not what is below it).
func (t *recvTable) del(p string) {
	if k, ok := t.key(p, false); ok {
		delete(t.ids, k)
		return
	}
	delete(t.other, p)
}

// moveFile re-keys one file moved from sp to dp; what was known about dp
// is replaced (or forgotten when sp was not received).
func (t *recvTable) moveFile(sp, dp string) {
	r, ok := t.get(sp)
	t.del(dp)
	if ok {
		t.del(sp)
		t.put(dp, r)
	}
}

// forgetTree forgets p and everything below it. It scans the table: only
// directory removes and moves come here, a few per backup.
func (t *recvTable) forgetTree(p string) {
	t.del(p)
	pre := p + "/"
	for k := range t.ids {
		if strings.HasPrefix(t.path(k), pre) {
			delete(t.ids, k)
		}
	}
	for k := range t.other {
		if strings.HasPrefix(k, pre) {
			delete(t.other, k)
		}
	}
}

// moveTree re-keys everything at or below sp to dp (a directory move).
func (t *recvTable) moveTree(sp, dp string) {
	moved := map[string]recvFile{}
	t.each(func(p string, r recvFile) {
		if p == sp || strings.HasPrefix(p, sp+"/") {
			moved[dp+strings.TrimPrefix(p, sp)] = r
		}
	})
	t.forgetTree(sp)
	t.forgetTree(dp)
	for p, r := range moved {
		t.put(p, r)
	}
}

// len returns how many files are recorded.
func (t *recvTable) len() int { return len(t.ids) + len(t.other) }

// each calls fn for every recorded file in no particular order. fn must
// not change the table.
func (t *recvTable) each(fn func(p string, r recvFile)) {
	for k, r := range t.ids {
		fn(t.path(k), r)
	}
	for p, r := range t.other {
		fn(p, r)
	}
}
