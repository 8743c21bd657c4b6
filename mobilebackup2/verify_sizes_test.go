package mobilebackup2

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReceivedSizeOnDisk: a received file whose size on disk no longer
// matches what arrived is a problem, found by the tree walk (hashing) or
// by a stat of its own (not hashing, or outside <UDID>/); a received file
// the phone moved away afterwards is not.
func TestReceivedSizeOnDisk(t *testing.T) {
	const (
		udid = "00008030-001A"
		id   = "ab0123456789abcdef0123456789abcdef012345"
	)
	for _, hash := range []bool{true, false} {
		dir := t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(dir, udid, "ab"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, udid, "ab", id), []byte("short"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, udid, "same.bin"), []byte("1234"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "outside.bin"), []byte("12345678"), 0o644))
		root, err := os.OpenRoot(dir)
		require.NoError(t, err)
		rt := newRecvTable()
		rt.put(udid+"/ab/"+id, recvFile{size: 9, hashed: hash})
		rt.put(udid+"/same.bin", recvFile{size: 4, hashed: hash})
		rt.put("outside.bin", recvFile{size: 3, hashed: hash})
		rt.put(udid+"/Snapshot/ab/"+id, recvFile{size: 1, hashed: hash}) // moved away since
		v := &verifier{root: root, rootDir: dir, udid: udid, received: rt, hash: hash}
		_, sum, err := v.run()
		root.Close()
		require.NoError(t, err)
		var sizes []string
		for _, p := range sum.problems {
			if strings.HasPrefix(p.Problem, "size on disk") {
				sizes = append(sizes, p.Path)
			}
		}
		assert.ElementsMatch(t, []string{udid + "/ab/" + id, "outside.bin"}, sizes, "hashing %v", hash)
	}
}
