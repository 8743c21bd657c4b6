package usbemu

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/ibackup/ibackup/fakedevice/devmux"
)

// Test services a mux-only phone offers (usbemu-phone -echo) so that the
// USB path can be exercised and timed without lockdown.
const (
	// EchoPort echoes every byte back.
	EchoPort uint16 = 7777
	// SourcePort reads one decimal byte count ending in '\n' and answers
	// with that many bytes of Pattern, then closes.
	SourcePort uint16 = 7778
)

// maxSource bounds a SourcePort request (1 GiB).
const maxSource = 1 << 30

// Echo copies everything c sends back to it, then closes c.
func Echo(c net.Conn) {
	defer c.Close()
	_, _ = io.Copy(c, c)
}

// Source serves one SourcePort request on c, then closes c.
func Source(c net.Conn) {
	defer c.Close()
	line, err := bufio.NewReaderSize(c, 64).ReadString('\n')
	if err != nil {
		return
	}
	n, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil || n < 0 || n > maxSource {
		return
	}
	buf := make([]byte, 64<<10)
	for sent := int64(0); sent < n; {
		chunk := buf[:min(int64(len(buf)), n-sent)]
		Pattern(chunk, sent)
		if _, err := c.Write(chunk); err != nil {
			return
		}
		sent += int64(len(chunk))
	}
}

// Pattern fills p with the source bytes starting at stream offset off:
// byte i of the stream is i mod 251 (a prime, so packet boundaries never
// line up with the pattern).
func Pattern(p []byte, off int64) {
	v := byte(off % 251)
	for i := range p {
		p[i] = v
		v++
		if v == 251 {
			v = 0
		}
	}
}

// ServeTestServices serves one mux session with fakedevice/devmux and the
// echo and source services until the session ends; it returns devmux's
// cause (io.EOF-wrapping when the host started over).
func ServeTestServices(ctx context.Context, s *Session) error {
	srv := devmux.New(s, nil)
	for port, serve := range map[uint16]func(net.Conn){EchoPort: Echo, SourcePort: Source} {
		l, err := srv.Listen(port)
		if err != nil {
			return fmt.Errorf("usbemu: %w", err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go serve(c)
			}
		}()
	}
	return srv.Serve(ctx)
}
