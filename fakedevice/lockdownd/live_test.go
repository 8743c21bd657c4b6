package lockdownd

import (
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestLiveValues: a value another service changes (the backup service's
// WillEncrypt after ChangePassword, mobilebackup2-and-backup-format.md
// §6.5) is read live, per key and in the whole-domain dict.
func TestLiveValues(t *testing.T) {
	var on atomic.Bool
	s := newServer(t, func(c *Config) {
		c.LiveValues = func(domain string) map[string]any {
			if domain == "com.apple.mobile.backup" {
				return map[string]any{"WillEncrypt": on.Load()}
			}
			return nil
		}
	})
	v, code := s.getValue(true, "com.apple.mobile.backup", "WillEncrypt")
	assert.Empty(t, code)
	assert.Equal(t, false, v)
	on.Store(true)
	v, _ = s.getValue(true, "com.apple.mobile.backup", "WillEncrypt")
	assert.Equal(t, true, v)
	all, _ := s.getValue(true, "com.apple.mobile.backup", "")
	assert.Equal(t, map[string]any{"WillEncrypt": true}, all)
	_, code = s.getValue(false, "com.apple.mobile.backup", "WillEncrypt")
	assert.Equal(t, "GetProhibited", code)
	v, _ = s.getValue(true, "com.apple.mobile.iTunes", "MinITunesVersion")
	assert.Equal(t, "12.0", v)
}
