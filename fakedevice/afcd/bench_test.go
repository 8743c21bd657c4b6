package afcd

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/ibackup/ibackup/lockdown/afc"
)

// BenchmarkTransfer measures a 1 MiB AFC write plus read-back over
// loopback TCP (client chunking and server handling, no USB mux).
func BenchmarkTransfer(b *testing.B) {
	srv, err := New(Config{Root: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	sconn, err := ln.Accept()
	_ = ln.Close()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ctx, sconn) }()
	c := afc.NewClient(conn)
	defer func() { _ = c.Close(); cancel(); wg.Wait() }()

	data := make([]byte, 1<<20)
	b.SetBytes(2 * int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		if err := c.WriteFile(ctx, "/bench", data); err != nil {
			b.Fatal(err)
		}
		got, err := c.ReadFile(ctx, "/bench", 2<<20)
		if err != nil || len(got) != len(data) {
			b.Fatal(err, len(got))
		}
	}
}
