// Package fakenet gives tests a buffered connection pair: both ends of a
// loopback TCP connection. Unlike net.Pipe it buffers, so two peers that both
// write first (as protocol peers do) cannot deadlock (STYLE.md point 14).
package fakenet

import (
	"net"
	"testing"
)

// Pipe returns the dialing end a and the accepted end b of a loopback TCP
// connection. Both are closed when the test ends.
func Pipe(t testing.TB) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fakenet: %v", err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			c = nil
		}
		accepted <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("fakenet: %v", err)
	}
	b = <-accepted
	if b == nil {
		_ = a.Close()
		t.Fatal("fakenet: accept failed")
	}
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a, b
}
