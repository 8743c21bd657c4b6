package mobilebackup2

import (
	"bytes"
	"crypto/sha1"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/mobilebackup2/devicelink"
)

func TestFileSink(t *testing.T) {
	dir := t.TempDir()
	var s fileSink
	for name, tc := range map[string]struct {
		size  int
		limit int64
		fail  bool
	}{
		"empty":          {size: 0},
		"small":          {size: 100},
		"buffer size":    {size: sinkBufSize},
		"several frames": {size: 3*sinkBufSize + devicelink.FramePayload + 3},
		"over quota":     {size: 2*sinkBufSize + 1, limit: 2 * sinkBufSize, fail: true},
	} {
		t.Run(name, func(t *testing.T) {
			data := make([]byte, tc.size)
			for i := range data {
				data[i] = byte(i % 251)
			}
			var wire bytes.Buffer
			_, err := devicelink.SendFile(&wire, bytes.NewReader(data))
			require.NoError(t, err)
			f, err := os.Create(filepath.Join(dir, name))
			require.NoError(t, err)
			defer f.Close()
			q := &quota{limit: tc.limit}
			h := sha1.New()
			s.reset(f, q, h) // the buffer of the previous case is reused
			res, err := devicelink.ReceiveFile(&wire, &s)
			require.NoError(t, err)
			werr := res.WriteErr
			if werr == nil {
				werr = s.flush()
			}
			if tc.fail {
				assert.ErrorIs(t, werr, ErrDiskFull)
				return
			}
			require.NoError(t, werr)
			got, err := os.ReadFile(f.Name())
			require.NoError(t, err)
			assert.True(t, bytes.Equal(data, got), "content")
			assert.Equal(t, sha1.Sum(data), [sha1.Size]byte(h.Sum(nil)))
			assert.Equal(t, int64(tc.size), q.used)
		})
	}
}

func TestFileSinkWrite(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	require.NoError(t, err)
	defer f.Close()
	var s fileSink
	s.reset(f, &quota{}, nil)
	data := bytes.Repeat([]byte("0123456789"), sinkBufSize/4)
	n, err := s.Write(data)
	require.NoError(t, err)
	assert.Equal(t, len(data), n)
	require.NoError(t, s.flush())
	got, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, got))
}
