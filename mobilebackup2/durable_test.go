package mobilebackup2

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMakeDurable(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "U/ab"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "U/ab/f"), []byte("x"), 0o644))
	require.NoError(t, os.Symlink("ab/f", filepath.Join(dir, "U/link")))
	root, err := os.OpenRoot(dir)
	require.NoError(t, err)
	defer root.Close()
	d, err := newDurability(root)
	require.NoError(t, err)
	defer d.close()
	for range 3 {
		d.wrote(durableEvery) // starts a background pass unless one runs
	}
	require.NoError(t, d.finish())
	assert.False(t, d.busy)
	// The portable pass, used where syncfs is missing.
	require.NoError(t, syncEach(root))
}
