package usbmux_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/ibackup/ibackup/fakedevice/memlink"
	"github.com/ibackup/ibackup/usbmux"
)

const (
	benchChunk  = 1 << 20 // bytes per b.N iteration
	benchRounds = 5
)

// BenchmarkThroughput moves b.N MiB over a bare memlink (transfers of the largest packet of the
// direction) and through a mux connection over a memlink, in alternating rounds so that load
// from other processes hits both alike. It reports the ratio of the best round of each ("ratio",
// goal ≥ 0.5), the process CPU time per GiB moved through the mux, and both throughputs.
// ToDevice is a restore's direction, ToHost a backup's.
func BenchmarkThroughput(b *testing.B) {
	b.Run("ToDevice", func(b *testing.B) { benchThroughput(b, false) })
	b.Run("ToHost", func(b *testing.B) { benchThroughput(b, true) })
}

func benchThroughput(b *testing.B, toHost bool) {
	per := int64(max(b.N/benchRounds, 1)) * benchChunk
	buf := make([]byte, benchChunk)
	rbuf := make([]byte, usbmux.MaxDevicePacket)

	host, dev, _ := memlink.New(memlink.Options{})
	defer host.Close()
	defer dev.Close()
	r := newRig(b, nil, nil)
	l, err := r.srv.Listen(1234)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	hc, dc := r.connPair(b, l, 1234)
	defer hc.Close()
	defer dc.Close()
	src, dst := host, dev
	var wconn, rconn net.Conn = hc, dc
	transfer := int64(usbmux.MaxHostPacket)
	if toHost {
		src, dst = dev, host
		wconn, rconn = dc, hc
		transfer = usbmux.MaxDevicePacket
	}

	bare := func() time.Duration {
		start := time.Now()
		go func() {
			for sent := int64(0); sent < per; sent += transfer {
				if _, err := src.Write(buf[:min(per-sent, transfer)]); err != nil {
					return
				}
			}
		}()
		for got := int64(0); got < per; {
			n, err := dst.Read(rbuf)
			if err != nil {
				b.Fatal(err)
			}
			got += int64(n)
		}
		return time.Since(start)
	}
	overMux := func() time.Duration {
		start := time.Now()
		pump(b, wconn, rconn, buf[:benchChunk], rbuf, per)
		return time.Since(start)
	}

	b.ResetTimer()
	bestBare, bestMux := time.Duration(1<<62), time.Duration(1<<62)
	var muxCPU time.Duration
	for range benchRounds {
		bestBare = min(bestBare, bare())
		cpu0 := cpuTime()
		bestMux = min(bestMux, overMux())
		muxCPU += cpuTime() - cpu0
	}
	b.StopTimer()
	b.SetBytes(benchChunk)
	moved := float64(per) * benchRounds
	b.ReportMetric(bestBare.Seconds()/bestMux.Seconds(), "ratio")
	b.ReportMetric(muxCPU.Seconds()/(moved/(1<<30)), "cpu-s/GiB")
	b.ReportMetric(float64(per)/bestBare.Seconds()/1e6, "bare-MB/s")
	b.ReportMetric(float64(per)/bestMux.Seconds()/1e6, "mux-MB/s")
}

// BenchmarkRateOverMux sends device → host through a mux connection over a
// memlink limited to 40 MiB/s (both directions share it, like a USB 2 bus)
// with an always-ready reader, in writes of one TLS record, and reports the
// payload rate ÷ the limit ("ratio"): what the mux's windows, ACKs and
// headers leave of the link.
func BenchmarkRateOverMux(b *testing.B) {
	const rate = 40 << 20
	r := newRig(b, nil, nil)
	r.faults.RateLimit(rate)
	l, err := r.srv.Listen(1234)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	hc, dc := r.connPair(b, l, 1234)
	defer hc.Close()
	defer dc.Close()
	const per = rate / 4
	buf := make([]byte, 16413) // one full TLS 1.3 record
	rbuf := make([]byte, 32<<10)
	var took time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		pump(b, dc, hc, buf, rbuf, per)
		took += time.Since(start)
	}
	b.ReportMetric(float64(per)*float64(b.N)/took.Seconds()/rate, "ratio")
}

// pump writes n bytes to w in writes of len(chunk) on another goroutine
// while it reads them from r into rbuf, and returns when both are done.
func pump(b *testing.B, w io.Writer, r io.Reader, chunk, rbuf []byte, n int64) {
	b.Helper()
	done := make(chan error, 1)
	go func() {
		for sent := int64(0); sent < n; sent += int64(len(chunk)) {
			if _, err := w.Write(chunk[:min(n-sent, int64(len(chunk)))]); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	if _, err := io.CopyBuffer(io.Discard, io.LimitReader(r, n), rbuf); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
