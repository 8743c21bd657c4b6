package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.txt")

// TestHelpGolden compares every help text with testdata/golden (regenerate
// with `go test ./cmd/ibackup -run TestHelpGolden -update`).
func TestHelpGolden(t *testing.T) {
	cases := map[string][]string{"main": {"help"}}
	for _, c := range commands {
		cases[strings.ReplaceAll(c.name, " ", "_")] = append(strings.Fields(c.name), "--help")
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			r := ibackup(t, args...)
			require.Equal(t, 0, r.code, r.stderr)
			path := filepath.Join("testdata", "golden", name+".txt")
			if *update {
				require.NoError(t, os.WriteFile(path, []byte(r.stdout), 0o644))
				return
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run with -update to create the golden file")
			assert.Equal(t, string(want), r.stdout)
		})
	}
	if *update {
		return
	}
	// No stale golden files for removed commands.
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.txt"))
	require.NoError(t, err)
	for _, f := range files {
		_, ok := cases[strings.TrimSuffix(filepath.Base(f), ".txt")]
		assert.True(t, ok, "stale golden file %s", f)
	}
}

func TestUsageErrors(t *testing.T) {
	r := ibackup(t)
	assert.Equal(t, 2, r.code)
	r = ibackup(t, "nonsense")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "unknown command")
	r = ibackup(t, "backup")
	assert.Equal(t, 2, r.code)
	r = ibackup(t, "backup", "--no-such-flag", "x")
	assert.Equal(t, 2, r.code)
	r = ibackup(t, "devices")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "built without direct USB support: install libusb-1.0-0-dev")
}
