package mobilebackup2

import (
	"crypto/sha1"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ibackup/ibackup/mobilebackup2/snapshot"
)

// TestManifestMerge: rows and record entries meet in ComparePaths order;
// every row is judged exactly once.
func TestManifestMerge(t *testing.T) {
	id := func(c string) string { return c + c + "/" + strings.Repeat(c, 40) }
	sum := func(s string) [sha1.Size]byte { return sha1.Sum([]byte(s)) }
	rows := []rowCheck{
		{rel: id("0"), size: 1}, // before every entry: missing
		{rel: id("1"), size: 5, digest: sum("good"), hasDigest: true}, // matches
		{rel: id("2"), size: 9}, // size differs
		{rel: id("3"), size: 4, digest: sum("other"), hasDigest: true}, // digest differs
		{rel: id("3"), size: 4, digest: sum("third"), hasDigest: true}, // duplicate row, same file
		{rel: id("4"), size: 2}, // no digest: size only
		{rel: id("a"), size: 1}, // between entries: missing
		{rel: id("f"), size: 1}, // after every entry: missing
	}
	entries := []snapshot.Entry{
		{Path: id("1"), Size: 5, SHA1: sum("good")},
		{Path: id("2"), Size: 3},
		{Path: id("3"), Size: 4, SHA1: sum("third")},
		{Path: id("4"), Size: 2, SHA1: sum("x")},
		{Path: "Info.plist", Size: 7},
		{Path: "Manifest.db", Size: 7},
		{Path: id("b"), Size: 1},
	}
	ch := make(chan rowCheck, len(rows))
	for _, r := range rows {
		ch <- r
	}
	close(ch)
	done := make(chan struct{})
	close(done)
	m := &manifestCheck{v: &verifier{udid: "U"}, rows: ch, cancel: func() {}, done: done, files: len(rows)}
	for _, e := range entries {
		m.visit(e)
	}
	s := &verifySummary{}
	m.finish(s)
	got := map[string]string{}
	for _, p := range s.problems {
		got[p.Path] += p.Problem + ";"
	}
	assert.Equal(t, map[string]string{
		"U/" + id("0"): "missing (Manifest.db references it);",
		"U/" + id("2"): "size 3, Manifest.db says 9;",
		"U/" + id("3"): "SHA-1 " + hexOf(sum("third")) + ", Manifest.db says " + hexOf(sum("other")) + ";",
		"U/" + id("a"): "missing (Manifest.db references it);",
		"U/" + id("f"): "missing (Manifest.db references it);",
	}, got)
	assert.Equal(t, len(rows), s.files)
}

func hexOf(b [sha1.Size]byte) string {
	const digits = "0123456789abcdef"
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte(digits[c>>4])
		sb.WriteByte(digits[c&15])
	}
	return sb.String()
}
