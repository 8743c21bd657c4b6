package mobilebackup2_test

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
)

// BenchmarkBackupVerify measures full backups over loopback TCP with and
// without per-file verification, alternating the two, and reports
// verify/noverify (goal ≤ 1.05) and the verified throughput in MB/s.
// The fake phone computes no digests, so the ratio shows only host cost.
func BenchmarkBackupVerify(b *testing.B) {
	content := b.TempDir()
	const files, size = 48, 1 << 20
	buf := make([]byte, size)
	for i := range files {
		_, _ = rand.Read(buf)
		p := filepath.Join(content, "MediaDomain", "Media", fmt.Sprintf("f%03d.bin", i))
		require.NoError(b, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(b, os.WriteFile(p, buf, 0o644))
	}
	cfg := backupagent.Config{ContentDir: content, WorkDir: b.TempDir(), NoDigest: true}
	dirV, dirN := b.TempDir(), b.TempDir()
	var tv, tn time.Duration
	run := func(dir string, skip bool) time.Duration {
		o := opts(dir)
		o.Full, o.Keep, o.SkipVerify = true, 1, skip
		start := time.Now()
		_, err, _ := backupOnce(b, cfg, o)
		require.NoError(b, err)
		return time.Since(start)
	}
	run(dirV, false) // warm up both directories
	run(dirN, true)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			tv += run(dirV, false)
			tn += run(dirN, true)
		} else {
			tn += run(dirN, true)
			tv += run(dirV, false)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(tv)/float64(tn), "verify/noverify")
	b.ReportMetric(float64(files*size)/1e6/(tv.Seconds()/float64(b.N)), "MB/s")
}
