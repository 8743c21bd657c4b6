//go:build faultsuite

package faultsuite

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFaultSuite runs the whole suite (about 2 minutes on 2 cores):
//
//	go test -tags faultsuite -run TestFaultSuite -v ./fakedevice/faultsuite/
func TestFaultSuite(t *testing.T) {
	_, file, _, ok := runtime.Caller(0)
	require.True(t, ok)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin, err := Build(ctx, root, dir)
	require.NoError(t, err)
	res, err := Run(ctx, Config{Ibackup: bin, Work: dir, Seed: 1, Out: os.Stdout})
	require.NoError(t, err)
	for _, r := range res {
		assert.NoError(t, r.Err, r.Name)
	}
}
