package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFigureVerdict(t *testing.T) {
	f := figure{Name: "cpu-small", What: "host CPU", Value: 2.5, Goal: 2, AtLeast: true, Detail: "x"}
	assert.True(t, f.met())
	assert.Contains(t, f.String(), "goal ≥ 2")
	assert.Contains(t, f.String(), " ok ")
	f.Value = 1.9
	assert.False(t, f.met())
	assert.Contains(t, f.String(), "MISS")

	m := memFig("mem-ls", "peak RSS", usage{MaxRSS: 300 * mib, Wall: time.Second})
	assert.False(t, m.met())
	assert.Contains(t, m.String(), "300.00 MiB  goal ≤ 256 MiB")
	m.Value = 100
	assert.True(t, m.met())
}

func TestHelpers(t *testing.T) {
	assert.Equal(t, "1 GiB", mibs(1<<30))
	assert.Equal(t, "40 MiB", mibs(40*mib))
	assert.True(t, hasAll("a\nb\n", []string{"a", "b"}))
	assert.False(t, hasAll("a\n", []string{"a", "b"}))

	var tb tailBuffer
	_, _ = tb.Write([]byte(strings.Repeat("x", 5000)))
	_, _ = tb.Write([]byte("end"))
	assert.Len(t, tb.String(), 4096)
	assert.True(t, strings.HasSuffix(tb.String(), "end"))
}

func TestChangeFiles(t *testing.T) {
	root := t.TempDir()
	for i := range 200 {
		p := filepath.Join(root, "D", string(rune('a'+i%26)), strings.Repeat("f", 1+i/26))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte("same content"), 0o644))
	}
	before, err := treeBytes(root)
	require.NoError(t, err)
	n, err := changeFiles(root, 0.01, 7)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	after, err := treeBytes(root)
	require.NoError(t, err)
	assert.Equal(t, before, after, "sizes are kept")
}

func TestAddBigFiles(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, addBigFiles(root, 3, 3*mib, 1))
	n, err := treeBytes(root)
	require.NoError(t, err)
	assert.Equal(t, int64(3*mib), n)
}

func TestProfileOverlay(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "cmd", "ibackup"), 0o755))
	main := "package main\n\nfunc main() {\n\tcode := 0\n\tos.Exit(code)\n}\n"
	require.NoError(t, os.WriteFile(filepath.Join(root, "cmd", "ibackup", "main.go"), []byte(main), 0o644))
	dir := t.TempDir()
	ov, err := writeProfileOverlay(root, dir)
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(dir, "main.go"))
	require.NoError(t, err)
	assert.Contains(t, string(b), "ibenchExit(code)")
	j, err := os.ReadFile(ov)
	require.NoError(t, err)
	assert.Contains(t, string(j), "zz_ibench_profile.go")

	require.NoError(t, os.WriteFile(filepath.Join(root, "cmd", "ibackup", "main.go"), []byte("package main\n"), 0o644))
	_, err = writeProfileOverlay(root, dir)
	assert.Error(t, err, "a main.go that changed shape is reported, not silently unprofiled")
}
