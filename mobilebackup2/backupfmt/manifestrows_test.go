package backupfmt

import (
	"context"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRowsByFileID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Manifest.db")
	recs := writeTestDB(t, path, 30)
	db, err := OpenManifestDB(path)
	require.NoError(t, err)
	defer db.Close()

	var want []string
	byID := map[string]Record{}
	for _, r := range recs {
		want = append(want, r.FileID)
		byID[r.FileID] = r
	}
	sort.Strings(want)
	var got []string
	require.NoError(t, db.EachByFileID(func(r Record) error {
		got = append(got, r.FileID)
		w := byID[r.FileID]
		assert.Equal(t, w.Domain, r.Domain)
		assert.Equal(t, w.RelativePath, r.RelativePath)
		assert.Equal(t, w.Flags, r.Flags)
		require.NotNil(t, r.File)
		assert.Equal(t, w.File.Size, r.File.Size)
		return nil
	}))
	assert.Equal(t, want, got, "fileID order")

	// Two walks of the same database see byte-identical rows.
	a, err := db.RowsByFileID(context.Background())
	require.NoError(t, err)
	defer a.Close()
	b, err := db.RowsByFileID(context.Background())
	require.NoError(t, err)
	defer b.Close()
	require.True(t, a.Next())
	require.True(t, b.Next())
	assert.True(t, a.Row().Equal(b.Row()))
	require.True(t, b.Next())
	assert.False(t, a.Row().Equal(b.Row()))
	for a.Next() {
	}
	assert.NoError(t, a.Err())
}

func TestRawRowNullBlob(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Manifest.db")
	w, err := CreateManifestDB(path)
	require.NoError(t, err)
	require.NoError(t, w.Add(Record{Domain: "D", RelativePath: "nil", Flags: FlagFile}))
	require.NoError(t, w.Close())
	db, err := OpenManifestDB(path)
	require.NoError(t, err)
	defer db.Close()
	n := 0
	require.NoError(t, db.EachByFileID(func(r Record) error {
		n++
		assert.Nil(t, r.File)
		assert.ErrorIs(t, r.FileErr, ErrMalformed)
		return nil
	}))
	assert.Equal(t, 1, n)
}
