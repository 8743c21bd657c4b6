package usbmuxd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
)

// DefaultSocket is where usbmuxd listens on Linux and macOS (§3.1).
const DefaultSocket = "/var/run/usbmuxd"

// ParseAddress turns a socket address as USBMUXD_SOCKET_ADDRESS spells it
// into a network ("unix" or "tcp") and an address for net.Dial/net.Listen
// (§3.1, libimobiledevice-client-needs.md §1.1):
//
//	UNIX:/path        UNIX socket at /path
//	host:port         TCP, split at the last colon; [v6addr]:port too
//	/path or name     UNIX socket (anything without a colon)
//
// The TCP port must be 1–65535, as libusbmuxd requires.
func ParseAddress(addr string) (network, address string, err error) {
	return parseAddress(addr, false)
}

// parseAddress is ParseAddress; listen also allows TCP port 0 (any port).
func parseAddress(addr string, listen bool) (network, address string, err error) {
	if rest, ok := strings.CutPrefix(addr, "UNIX:"); ok {
		if rest == "" {
			return "", "", fmt.Errorf("usbmuxd: empty UNIX socket path in %q", addr)
		}
		return "unix", rest, nil
	}
	if addr == "" {
		return "", "", errors.New("usbmuxd: empty socket address")
	}
	if !strings.Contains(addr, ":") {
		return "unix", addr, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("usbmuxd: bad socket address %q: %w", addr, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (n == 0 && !listen) {
		return "", "", fmt.Errorf("usbmuxd: bad port in socket address %q", addr)
	}
	return "tcp", net.JoinHostPort(host, port), nil
}

// Listen opens the daemon's listening socket at addr (see ParseAddress;
// "host:0" picks a free TCP port). A
// stale UNIX socket file at the path is replaced, as usbmuxd does; any
// other kind of file there is an error. The socket file is made
// world-accessible (0666) like usbmuxd's, so unprivileged tools can connect.
func Listen(addr string) (net.Listener, error) {
	network, address, err := parseAddress(addr, true)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		if fi, err := os.Lstat(address); err == nil {
			if fi.Mode().Type() != fs.ModeSocket {
				return nil, fmt.Errorf("usbmuxd: %s exists and is not a socket", address)
			}
			if c, err := net.Dial("unix", address); err == nil {
				c.Close()
				return nil, fmt.Errorf("usbmuxd: another daemon is serving %s", address)
			}
			if err := os.Remove(address); err != nil {
				return nil, fmt.Errorf("usbmuxd: removing stale socket: %w", err)
			}
		}
	}
	l, err := net.Listen(network, address)
	if err != nil {
		return nil, fmt.Errorf("usbmuxd: listen: %w", err)
	}
	if network == "unix" {
		if err := os.Chmod(address, 0o666); err != nil {
			l.Close()
			return nil, fmt.Errorf("usbmuxd: %w", err)
		}
	}
	return l, nil
}

// dialAddress connects to a daemon at addr (see ParseAddress).
func dialAddress(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error) {
	network, address, err := ParseAddress(addr)
	if err != nil {
		return nil, err
	}
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("usbmuxd: connecting to daemon: %w", err)
	}
	return c, nil
}
