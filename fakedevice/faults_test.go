package fakedevice

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseFaults(t *testing.T) {
	f, err := ParseFaults([]string{"deny-trust,trust-delay=5s", "locked", "wrong-cert", "passcode-wait",
		"link-drop-after=2M", "stall-after=10k", "corrupt-after=100", "rate=30M/s", "error=208",
		"remote-error-file=3", "truncate-file=4", "disk-full"})
	require.NoError(t, err)
	assert.Equal(t, Faults{
		DenyTrust: true, TrustDelay: 5 * time.Second, Locked: true, WrongCert: true,
		PasscodeWait: PasscodeNever, LinkDropAfter: 2 << 20, StallAfter: 10 << 10, CorruptAfter: 100,
		Rate: 30 << 20, Error: 208, RemoteErrorFile: 3, TruncateFile: 4, DiskFull: true,
	}, f)

	f, err = ParseFaults([]string{"passcode-wait=2s"})
	require.NoError(t, err)
	assert.Equal(t, 2*time.Second, f.PasscodeWait)

	for _, bad := range []string{"nope", "deny-trust=1", "trust-delay", "trust-delay=x", "rate=0", "error=-1", "link-drop-after=lots", "disk-full=yes"} {
		_, err := ParseFaults([]string{bad})
		assert.Error(t, err, bad)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "512": 512, "1k": 1024, "1KiB": 1024, "1.5M": 3 << 19, "2MB": 2 << 20, "1G": 1 << 30} {
		got, err := ParseBytes(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	_, err := ParseBytes("-1")
	assert.Error(t, err)
}

func FuzzParseFaults(f *testing.F) {
	f.Add("deny-trust,rate=1M/s")
	f.Add("error=208")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseFaults([]string{s})
	})
}
