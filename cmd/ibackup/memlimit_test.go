package main

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLimitMemory(t *testing.T) {
	old := debug.SetMemoryLimit(math.MaxInt64)
	defer debug.SetMemoryLimit(old)
	for _, tc := range []struct {
		cmd, gomemlimit string
		want            int64
	}{
		{"ls", "", memoryLimit},
		{"backup", "", memoryLimit},
		{"backup", "1GiB", math.MaxInt64}, // the user's setting wins (the runtime read it)
		{"usbmuxd", "", math.MaxInt64},
	} {
		debug.SetMemoryLimit(math.MaxInt64)
		e := &env{getenv: func(k string) string {
			if k == "GOMEMLIMIT" {
				return tc.gomemlimit
			}
			return ""
		}}
		limitMemory(e, &command{name: tc.cmd})
		assert.Equal(t, tc.want, debug.SetMemoryLimit(-1), tc.cmd+" "+tc.gomemlimit)
	}
}
