package mobilebackup2_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/mobilebackup2"
)

// TestUserCancelled: the caller cancels with ErrUserCancelled (as it does
// on syncCancelRequest); the error says so and the last backup stays.
func TestUserCancelled(t *testing.T) {
	content, dir := t.TempDir(), t.TempDir()
	writeTree(t, content, map[string]string{"HomeDomain/a": "a", "HomeDomain/b": "b"})
	cfg := backupagent.Config{ContentDir: content, WorkDir: t.TempDir()}
	_, err, _ := backupOnce(t, cfg, opts(dir))
	require.NoError(t, err)
	before := treeSnapshot(t, dir)

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	bad := cfg
	bad.Faults.OnFile = func(n int) { cancel(mobilebackup2.ErrUserCancelled) }
	o := opts(dir)
	o.Full = true
	c, closeFn := session(t, bad)
	_, err = c.Backup(ctx, o)
	_ = closeFn()
	require.ErrorIs(t, err, mobilebackup2.ErrUserCancelled)
	assert.Contains(t, mobilebackup2.Hint(err), "cancelled")
	assert.Equal(t, before, treeSnapshot(t, dir))
}

func TestProgressEvents(t *testing.T) {
	content, dir := t.TempDir(), t.TempDir()
	writeTree(t, content, map[string]string{"HomeDomain/a": "aaaa", "HomeDomain/b": "bb"})
	var evs []mobilebackup2.Event
	o := opts(dir)
	o.Progress = func(e mobilebackup2.Event) { evs = append(evs, e) }
	res, err, _ := backupOnce(t, backupagent.Config{ContentDir: content, WorkDir: t.TempDir()}, o)
	require.NoError(t, err)
	require.NotEmpty(t, evs)
	phases := map[mobilebackup2.Phase]bool{}
	files := 0
	for _, e := range evs {
		phases[e.Phase] = true
		assert.GreaterOrEqual(t, e.Files, files, "file count never goes down")
		files = e.Files
	}
	for _, p := range []mobilebackup2.Phase{mobilebackup2.PhaseConnecting, mobilebackup2.PhaseReceiving,
		mobilebackup2.PhaseMoving, mobilebackup2.PhaseVerifying, mobilebackup2.PhaseDone} {
		assert.True(t, phases[p], p)
	}
	last := evs[len(evs)-1]
	assert.Equal(t, res.FilesReceived, last.Files)
	assert.Equal(t, res.BytesReceived, last.Bytes)
	assert.Positive(t, last.Bytes)
	assert.Equal(t, filepath.Join(dir, testUDID), res.Path)
}
