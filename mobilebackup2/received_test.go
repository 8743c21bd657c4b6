package mobilebackup2

import (
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRecvTable(t *testing.T) {
	const (
		id  = "ab0123456789abcdef0123456789abcdef012345"
		udd = "00008030-001A"
	)
	staged := udd + "/Snapshot/ab/" + id
	final := udd + "/ab/" + id
	tb := newRecvTable()
	tb.put(staged, recvFile{size: 7, hashed: true})
	tb.put(udd+"/Manifest.db", recvFile{size: 9})
	tb.put(udd+"/AB/"+id, recvFile{size: 1})          // not lowercase: plain map
	tb.put(udd+"/cd/"+id, recvFile{size: 2})          // prefix does not match the ID
	tb.put(udd+"/ab/"+id[:39]+"g", recvFile{size: 3}) // not hex
	require.Equal(t, 5, tb.len())
	assert.Len(t, tb.ids, 1)

	r, ok := tb.get(staged)
	require.True(t, ok)
	assert.Equal(t, int64(7), r.size)
	assert.False(t, tb.has(final))

	tb.moveFile(staged, final)
	assert.False(t, tb.has(staged))
	r, ok = tb.get(final)
	require.True(t, ok)
	assert.Equal(t, int64(7), r.size)

	// A move of something never received drops what was known at the target.
	tb.moveFile(udd+"/Snapshot/zz", final)
	assert.False(t, tb.has(final))

	tb.put(staged, recvFile{size: 8})
	tb.moveTree(udd+"/Snapshot", udd+"/Old")
	assert.False(t, tb.has(staged))
	r, ok = tb.get(udd + "/Old/ab/" + id)
	require.True(t, ok)
	assert.Equal(t, int64(8), r.size)

	tb.forgetTree(udd + "/Old")
	assert.False(t, tb.has(udd+"/Old/ab/"+id))
	assert.Equal(t, []string{udd + "/AB/" + id, udd + "/Manifest.db", udd + "/ab/" + id[:39] + "g", udd + "/cd/" + id}, tb.sortedPaths())
	for _, p := range tb.sortedPaths() {
		assert.True(t, tb.has(p), p)
	}
}

// sortedPaths returns every recorded path in byte order.
func (t *recvTable) sortedPaths() []string {
	out := make([]string, 0, t.len())
	t.each(func(p string, _ recvFile) { out = append(out, p) })
	sort.Strings(out)
	return out
}
