package faultsuite

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(c), 0o644))
	}
}

func TestFingerprintFollowsRootSymlink(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, filepath.Join(dir, "real"), map[string]string{"a/b.txt": "hello", "c": ""})
	require.NoError(t, os.Symlink("real", filepath.Join(dir, "link")))
	require.NoError(t, os.Symlink("c", filepath.Join(dir, "real", "l")))

	want, err := Fingerprint(filepath.Join(dir, "real"))
	require.NoError(t, err)
	got, err := Fingerprint(filepath.Join(dir, "link"))
	require.NoError(t, err)
	assert.True(t, want.Equal(got))
	assert.Equal(t, "d", got["a"])
	assert.Equal(t, "l:c", got["l"])
	assert.Len(t, got["a/b.txt"], 2+64)
}

func TestDiff(t *testing.T) {
	want := Tree{"a": "f:1", "b": "f:2", "d": "d"}
	assert.Empty(t, Diff(want, Tree{"a": "f:1", "b": "f:2", "d": "d"}, nil))
	assert.Equal(t, "1 missing (b)", Diff(want, Tree{"a": "f:1", "d": "d"}, nil))
	assert.Equal(t, "1 different (a)", Diff(want, Tree{"a": "f:9", "b": "f:2", "d": "d"}, nil))

	got := Tree{"a": "f:1", "b": "f:2", "d": "d", "x": "f:7"}
	assert.Equal(t, "1 unexpected (x)", Diff(want, got, nil))
	assert.Empty(t, Diff(want, got, Tree{"x": "f:7"}), "pre-existing content is allowed")
	assert.Equal(t, "1 unexpected (x)", Diff(want, got, Tree{"x": "f:6"}), "changed pre-existing content is not")

	many := Tree{}
	for _, p := range []string{"p1", "p2", "p3", "p4", "p5"} {
		many[p] = "f:0"
	}
	assert.Equal(t, "5 missing (p1, p2, p3 and 2 more)", Diff(many, Tree{}, nil))
}

func TestFaultName(t *testing.T) {
	assert.Equal(t, "link-drop-after", faultName("link-drop-after=4K"))
	assert.Equal(t, "passcode-wait", faultName("passcode-wait[=DUR]"))
	assert.Equal(t, "locked", faultName("locked"))
}

func TestClearError(t *testing.T) {
	assert.NoError(t, clearError(run{code: 1, stderr: "ibackup backup: mobilebackup2: the phone reported error 208\n"}, "backup"))
	assert.Error(t, clearError(run{code: 0}, "backup"))
	assert.Error(t, clearError(run{code: 2, stderr: "panic: boom\ngoroutine 1 [running]:\n"}, "backup"))
	assert.Error(t, clearError(run{code: 1, stderr: "something odd\n"}, "restore"))
}
