package devmux

import (
	"fmt"
	"net"
	"sync"

	"github.com/ibackup/ibackup/usbmux"
)

// listener is a net.Listener for one device port.
type listener struct {
	srv  *Server
	port uint16
	ch   chan net.Conn

	mu     sync.Mutex
	closed chan struct{}
	done   bool
}

// offer hands an accepted connection to Accept; false when the backlog is full or closed.
func (l *listener) offer(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return false
	}
	select {
	case l.ch <- c:
		return true
	default:
		return false
	}
}

// Accept waits for the next host connection to the port.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		select { // connections that arrived before Close are still handed out
		case c := <-l.ch:
			return c, nil
		default:
		}
		return nil, fmt.Errorf("devmux: accept on port %d: %w", l.port, net.ErrClosed)
	}
}

// Close stops accepting; connections already accepted stay open, unclaimed ones are reset.
func (l *listener) Close() error {
	l.srv.mu.Lock()
	if l.srv.listeners[l.port] == l {
		delete(l.srv.listeners, l.port)
	}
	l.srv.mu.Unlock()
	return l.shut()
}

func (l *listener) shut() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return fmt.Errorf("devmux: close listener on port %d: %w", l.port, net.ErrClosed)
	}
	l.done = true
	close(l.closed)
	for {
		select {
		case c := <-l.ch:
			_ = c.Close()
		default:
			return nil
		}
	}
}

// Addr returns the device port.
func (l *listener) Addr() net.Addr { return usbmux.Addr{Device: true, Port: l.port} }
