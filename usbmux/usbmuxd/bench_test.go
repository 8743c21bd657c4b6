package usbmuxd

import (
	"context"
	"io"
	"testing"
)

// BenchmarkConnectEcho measures Connect + one 1 KiB echo + close through
// the Server, from parallel clients to 8 devices.
func BenchmarkConnectEcho(b *testing.B) {
	set := NewDeviceSet()
	devs := make([]Device, 0, 8)
	for i := range 8 {
		e := newEchoDevice(b)
		d, err := set.Add(Device{UDID: testUDID(i)}, e.Dial)
		if err != nil {
			b.Fatal(err)
		}
		devs = append(devs, d)
	}
	ts := startServer(b, set, nil)
	c, err := NewClient(ts.addr, nil)
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 1024)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, len(msg))
		i := 0
		for pb.Next() {
			conn, err := c.Connect(context.Background(), devs[i%len(devs)].ID, lockdownPort)
			if err != nil {
				b.Error(err)
				return
			}
			i++
			if _, err := conn.Write(msg); err != nil {
				b.Error(err)
			}
			if _, err := io.ReadFull(conn, buf); err != nil {
				b.Error(err)
			}
			conn.Close()
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "connects/s")
}

// BenchmarkStreamThroughput measures raw-stream throughput (client → device
// → client) through the Server once connected.
func BenchmarkStreamThroughput(b *testing.B) {
	set := NewDeviceSet()
	e := newEchoDevice(b)
	d, err := set.Add(Device{UDID: "bench"}, e.Dial)
	if err != nil {
		b.Fatal(err)
	}
	ts := startServer(b, set, nil)
	c, err := NewClient(ts.addr, nil)
	if err != nil {
		b.Fatal(err)
	}
	conn, err := c.Connect(context.Background(), d.ID, lockdownPort)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	chunk := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	done := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.Discard, conn, int64(b.N)*int64(len(chunk)))
		done <- err
	}()
	b.ResetTimer()
	for range b.N {
		if _, err := conn.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
