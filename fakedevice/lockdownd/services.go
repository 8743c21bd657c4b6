package lockdownd

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/ibackup/ibackup/lockdown"
)

// insecureNP is usable before trust (usbmuxd's preflight starts it, §5.6).
const insecureNP = "com.apple.mobile.insecure_notification_proxy"

// acceptTimeout bounds the wait for the host to connect to a service port.
const acceptTimeout = 30 * time.Second

// startService answers StartService (§5.6, §7.3, §7.6): checks, then opens
// a port through the PortListener and serves one connection on it.
func (s *Server) startService(cs *connState, req *lockdown.Request, resp *lockdown.Response) string {
	if req.Service == "" {
		return "MissingService"
	}
	// Before a session only the insecure notification proxy is offered;
	// the error strings for the rest are a guess (§7.3 [U]).
	if cs.sessionID == "" && req.Service != insecureNP {
		s.mu.Lock()
		paired := len(s.st.PairedHosts) > 0
		s.mu.Unlock()
		if paired {
			return "SessionInactive" // [U] trusted but no session
		}
		return "InvalidHostID" // [U] untrusted
	}
	if code := s.cfg.ServiceErrors[req.Service]; code != "" {
		return code
	}
	svc, ok := s.services[req.Service]
	if !ok {
		return "InvalidService"
	}
	// Escrow bag checks (§5.6, §7.6, pitfall 27): a bag the device cannot
	// open yet (not unlocked since boot) is MissingValue; a locked phone
	// refuses protected services to hosts that send no bag.
	s.mu.Lock()
	locked := s.locked
	bag := s.st.EscrowBag
	s.mu.Unlock()
	if len(req.EscrowBag) > 0 {
		if s.cfg.NotUnlockedSinceBoot {
			return "MissingValue" // libimobiledevice#1078
		}
		if !bytes.Equal(req.EscrowBag, bag) {
			return "EscrowLocked" // [U] a bag this device cannot open
		}
	} else if svc.EscrowBag && locked {
		return "PasswordProtected"
	}
	if s.cfg.Listener == nil {
		return "ServiceProhibited"
	}
	ln, port, ok := s.listen()
	if !ok {
		return "ServiceLimit"
	}
	// The service connection presents the same DeviceCertificate as the
	// session and accepts the same client certificates (§5.6 step 3).
	var cfg *tls.Config
	if svc.SSL {
		c, err := s.tlsConfig(cs.host)
		if err != nil {
			ln.Close()
			return "ServiceProhibited"
		}
		cfg = c
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.serveOne(ln, svc, cfg)
	}()
	resp.Service = req.Service
	resp.Port = uint64(port)
	resp.EnableServiceSSL = svc.SSL
	return ""
}

// listen opens the next free service port (49152 upward, §7.3).
func (s *Server) listen() (net.Listener, uint16, bool) {
	for range 256 {
		s.mu.Lock()
		port := s.nextPort
		s.nextPort++
		if s.nextPort == 0 || s.nextPort < port {
			s.nextPort = 49152
		}
		s.mu.Unlock()
		if port == lockdown.Port {
			continue
		}
		ln, err := s.cfg.Listener.Listen(port)
		if err == nil {
			return ln, port, true
		}
	}
	return nil, 0, false
}

// serveOne accepts one connection on ln (within acceptTimeout), wraps it in
// TLS when cfg is set and runs the service on it. Owned by s.wg.
func (s *Server) serveOne(ln net.Listener, svc Service, cfg *tls.Config) {
	t := time.AfterFunc(acceptTimeout, func() { ln.Close() })
	stop := context.AfterFunc(s.ctx, func() { ln.Close() })
	// One connection per StartService: libimobiledevice connects after it
	// has already stopped the lockdown session and closed that connection
	// (client-needs §2.4), so this goroutine outlives the lockdown conn.
	raw, err := ln.Accept()
	t.Stop()
	stop()
	ln.Close()
	if err != nil {
		return
	}
	defer raw.Close()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	stopConn := context.AfterFunc(ctx, func() { raw.Close() })
	defer stopConn()
	conn := raw
	if cfg != nil {
		tc := tls.Server(raw, cfg)
		hctx, hcancel := context.WithTimeout(ctx, tlsTimeout)
		err := tc.HandshakeContext(hctx)
		hcancel()
		if err != nil {
			s.log.Debug("lockdownd: service TLS handshake failed", "service", svc.Name, "err", err)
			return
		}
		conn = tc
	}
	if svc.Serve == nil {
		return
	}
	if err := svc.Serve(ctx, conn); err != nil {
		s.log.Debug("lockdownd: service ended", "service", svc.Name, "err", err)
	}
}
