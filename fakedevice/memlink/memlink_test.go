package memlink

import (
	"fmt"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func read(t *testing.T, r io.Reader, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	k, err := r.Read(b)
	require.NoError(t, err)
	return b[:k]
}

func TestTransfersAndBuffering(t *testing.T) {
	host, dev, f := New(Options{})
	// Both sides write first: no deadlock.
	_, err := host.Write([]byte("to device"))
	require.NoError(t, err)
	_, err = dev.Write([]byte("to host"))
	require.NoError(t, err)
	_, err = host.Write(nil) // ZLP
	require.NoError(t, err)
	_, err = host.Write([]byte("abcdef"))
	require.NoError(t, err)

	assert.Equal(t, "to host", string(read(t, host, 100)))
	assert.Equal(t, "to device", string(read(t, dev, 100)), "one transfer per Read")
	assert.Empty(t, read(t, dev, 100), "ZLP")
	assert.Equal(t, "abc", string(read(t, dev, 3)), "partial transfer")
	assert.Equal(t, "def", string(read(t, dev, 100)))

	transfers, bytes := f.Stats(ToDevice)
	assert.Equal(t, int64(3), transfers)
	assert.Equal(t, int64(15), bytes)

	assert.Error(t, f.Leaks())
	require.NoError(t, host.Close())
	_, err = dev.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF)
	_, err = dev.Write([]byte("x"))
	assert.ErrorIs(t, err, ErrPeerClosed)
	_, err = host.Read(make([]byte, 1))
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, host.Close(), ErrClosed)
	assert.ErrorContains(t, f.Leaks(), "device")
	require.NoError(t, dev.Close())
	assert.NoError(t, f.Leaks())
}

func TestWriteBlocksWhenFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, dev, _ := New(Options{Buffer: 10})
		_, err := host.Write(make([]byte, 8))
		require.NoError(t, err)
		done := make(chan error)
		go func() { _, err := host.Write(make([]byte, 8)); done <- err }()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("write should block on a full buffer")
		default:
		}
		read(t, dev, 100)
		require.NoError(t, <-done)
		_ = host.Close()
		_ = dev.Close()
	})
}

func TestDropAndStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, dev, f := New(Options{})
		_, err := host.Write([]byte("held"))
		require.NoError(t, err)
		f.Stall()
		got := make(chan string)
		go func() {
			b := make([]byte, 10)
			n, _ := dev.Read(b)
			got <- string(b[:n])
		}()
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("read during stall")
		default:
		}
		f.Unstall()
		assert.Equal(t, "held", <-got)

		errs := make(chan error, 2)
		go func() { _, err := dev.Read(make([]byte, 1)); errs <- err }()
		go func() { _, err := host.Read(make([]byte, 1)); errs <- err }()
		synctest.Wait()
		f.Drop()
		assert.ErrorIs(t, <-errs, ErrDropped)
		assert.ErrorIs(t, <-errs, ErrDropped)
		_, err = host.Write([]byte("x"))
		assert.ErrorIs(t, err, ErrDropped)
		_ = host.Close()
		_ = dev.Close()
	})
}

func TestCorruptDuplicateReorder(t *testing.T) {
	host, dev, f := New(Options{})
	f.CorruptAfter(5)
	_, _ = dev.Write([]byte("abc"))
	_, _ = dev.Write([]byte("defg"))
	assert.Equal(t, "abc", string(read(t, host, 10)))
	assert.Equal(t, []byte{'d', 'e', 'f' ^ 0xFF, 'g'}, read(t, host, 10))

	f.DuplicateNext()
	_, _ = dev.Write([]byte("dup"))
	assert.Equal(t, "dup", string(read(t, host, 10)))
	assert.Equal(t, "dup", string(read(t, host, 10)))

	f.ReorderNext()
	_, _ = dev.Write([]byte("one"))
	_, _ = dev.Write([]byte("two"))
	assert.Equal(t, "two", string(read(t, host, 10)))
	assert.Equal(t, "one", string(read(t, host, 10)))

	f.CorruptAfterTo(ToDevice, 0)
	_, _ = host.Write([]byte{0})
	assert.Equal(t, []byte{0xFF}, read(t, dev, 10))
	_ = host.Close()
	_ = dev.Close()
}

// TestRateLimit checks the token bucket in fake time: 3 MB at 1 MB/s take 3 s.
func TestRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, dev, f := New(Options{})
		f.RateLimit(1_000_000)
		go func() {
			b := make([]byte, 100_000)
			for {
				if _, err := dev.Read(b); err != nil {
					return
				}
			}
		}()
		start := time.Now()
		for range 30 {
			_, err := host.Write(make([]byte, 100_000))
			require.NoError(t, err)
		}
		assert.Equal(t, 3*time.Second, time.Since(start))
		f.RateLimit(0)
		start = time.Now()
		_, err := host.Write(make([]byte, 100_000))
		require.NoError(t, err)
		assert.Zero(t, time.Since(start))
		_ = host.Close()
		_ = dev.Close()
	})
}

// TestRateLimitLateWriter: a writer that needs a moment between transfers
// (to produce the next one, or because its timer fired late) still gets the
// configured rate, as long as it lags by less than lateSlack.
func TestRateLimitLateWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, dev, f := New(Options{})
		f.RateLimit(1_000_000) // 10 KB transfers take 10 ms each
		go func() {
			b := make([]byte, 10_000)
			for {
				if _, err := dev.Read(b); err != nil {
					return
				}
			}
		}()
		start := time.Now()
		for range 100 {
			_, err := host.Write(make([]byte, 10_000))
			require.NoError(t, err)
			time.Sleep(4 * time.Millisecond) // the writer's own work
		}
		// 1 MB at 1 MB/s is 1 s; only the last transfer's work adds.
		assert.LessOrEqual(t, time.Since(start), time.Second+4*time.Millisecond)
		_ = host.Close()
		_ = dev.Close()
	})
}

func TestRateLimitInterruptedByDrop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, dev, f := New(Options{})
		f.RateLimit(1000)
		errc := make(chan error)
		go func() { _, err := host.Write(make([]byte, 1_000_000)); errc <- err }()
		synctest.Wait()
		f.Drop()
		assert.ErrorIs(t, <-errc, ErrDropped)
		_ = host.Close()
		_ = dev.Close()
	})
}

// BenchmarkRateLimit writes back-to-back transfers through a link limited
// to 40 MiB/s with an always-ready reader, and reports the achieved rate ÷
// the limit for several transfer sizes: of the best round ("ratio", goal ≥
// 0.98; like BenchmarkThroughput it filters out load from other processes,
// which delays the simulator's own goroutines) and of all rounds
// ("mean-ratio").
func BenchmarkRateLimit(b *testing.B) {
	const rate = 40 << 20
	for _, size := range []int{60, 16 << 10, 32 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			host, dev, f := New(Options{})
			defer host.Close()
			defer dev.Close()
			f.RateLimit(rate)
			buf := make([]byte, size)
			total := int64(rate / 4) // a quarter of a second per round
			if size < 1024 {
				total /= 16
			}
			var moved int64
			var took time.Duration
			best := time.Duration(1 << 62)
			b.ResetTimer()
			for range b.N {
				// Start each round on an idle bus: no credit carried over.
				b.StopTimer()
				time.Sleep(2 * lateSlack)
				b.StartTimer()
				done := make(chan struct{})
				go func() {
					defer close(done)
					rb := make([]byte, 128<<10)
					for got := int64(0); got < total; {
						n, err := host.Read(rb)
						if err != nil {
							return
						}
						got += int64(n)
					}
				}()
				start := time.Now()
				for sent := int64(0); sent < total; sent += int64(size) {
					if _, err := dev.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				<-done
				d := time.Since(start)
				took += d
				best = min(best, d)
				moved += total
			}
			b.ReportMetric(float64(total)/best.Seconds()/rate, "ratio")
			b.ReportMetric(float64(moved)/took.Seconds()/rate, "mean-ratio")
		})
	}
}

// TestTransfersRecycled: transfers of every size class keep their content
// across partial reads, queue compaction and the reuse of read buffers.
func TestTransfersRecycled(t *testing.T) {
	host, dev, _ := New(Options{Buffer: 64 << 20})
	defer host.Close()
	defer dev.Close()
	sizes := []int{0, 1, 36, smallXfer, smallXfer + 1, 16 << 10, largeXfer, largeXfer + 1}
	for round := range 3 {
		var want [][]byte
		for i := range 150 {
			b := make([]byte, sizes[i%len(sizes)])
			for k := range b {
				b[k] = byte(i + k + round)
			}
			want = append(want, b)
			_, err := dev.Write(b)
			require.NoError(t, err)
		}
		rb := make([]byte, 1000+round*30000)
		for i, w := range want {
			got := []byte{}
			for first := true; first || len(got) < len(w); first = false {
				n, err := host.Read(rb)
				require.NoError(t, err)
				got = append(got, rb[:n]...)
			}
			require.Equal(t, w, got, "transfer %d of round %d", i, round)
		}
	}
}

// TestReadTransfer: ReadTransfer lends transfers (or their first max bytes) in order, mixes
// with Read, and reports ZLPs and the end like Read.
func TestReadTransfer(t *testing.T) {
	host, dev, _ := New(Options{})
	for _, s := range []string{"abcdef", "", "ghi", "jkl"} {
		_, err := dev.Write([]byte(s))
		require.NoError(t, err)
	}
	tr := host.(interface{ ReadTransfer(int) ([]byte, error) })
	b, err := tr.ReadTransfer(4)
	require.NoError(t, err)
	assert.Equal(t, "abcd", string(b))
	b, err = tr.ReadTransfer(100)
	require.NoError(t, err)
	assert.Equal(t, "ef", string(b))
	b, err = tr.ReadTransfer(100)
	require.NoError(t, err)
	assert.Empty(t, b, "ZLP")
	assert.Equal(t, "gh", string(read(t, host, 2)))
	b, err = tr.ReadTransfer(100)
	require.NoError(t, err)
	assert.Equal(t, "i", string(b))
	b, err = tr.ReadTransfer(100)
	require.NoError(t, err)
	assert.Equal(t, "jkl", string(b))
	require.NoError(t, dev.Close())
	_, err = tr.ReadTransfer(100)
	assert.ErrorIs(t, err, io.EOF)
	require.NoError(t, host.Close())
}
