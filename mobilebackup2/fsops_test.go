package mobilebackup2

import (
	"path"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"U/Status.plist":    "U/Status.plist",
		"U//ab/./x":         "U/ab/x",
		"U/Snapshot/":       "U/Snapshot",
		"00008110-X/ab/abc": "00008110-X/ab/abc",
	} {
		got, err := cleanPath(in)
		assert.NoError(t, err, in)
		assert.Equal(t, want, got)
	}
	for _, in := range []string{"", ".", "/etc/passwd", "../x", "U/../../x", "U/..", "a\x00b", `a\..\b`, "./"} {
		_, err := cleanPath(in)
		assert.ErrorIs(t, err, ErrUnsafePath, in)
	}
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"U/Status.plist", "../x", "/abs", "a/./b//c", "U/..", ".."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := cleanPath(s)
		if err != nil {
			return
		}
		assert.False(t, strings.HasPrefix(p, "/"))
		assert.NotEqual(t, ".", p)
		for _, c := range strings.Split(p, "/") {
			assert.NotEqual(t, "..", c)
		}
		assert.Equal(t, p, path.Clean(p))
	})
}

func TestErrnoCodes(t *testing.T) {
	assert.Equal(t, int64(-15), errnoCode(errDiskFull))
	assert.Equal(t, "No space left on device", errText(errDiskFull))
	assert.Equal(t, int64(-1), errnoCode(ErrUnsafePath))
}

func TestQuota(t *testing.T) {
	q := &quota{limit: 10}
	assert.NoError(t, q.take(6))
	assert.ErrorIs(t, q.take(5), ErrDiskFull)
	assert.NoError(t, q.take(4))
}
