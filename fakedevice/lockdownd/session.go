package lockdownd

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"

	"github.com/ibackup/ibackup/lockdown"
	"github.com/ibackup/ibackup/lockdown/pairrecord"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

var errNotPEM = errors.New("lockdownd: not a PEM certificate")

// tlsTimeout bounds a TLS handshake or shutdown on the device side.
const tlsTimeout = 10 * time.Second

// startSession answers StartSession (§5.3, §7.3).
func (s *Server) startSession(cs *connState, req *lockdown.Request, resp *lockdown.Response) string {
	if req.HostID == "" {
		return "MissingHostID"
	}
	if cs.sessionID != "" {
		return "SessionActive" // [U]
	}
	s.mu.Lock()
	h, ok := s.st.PairedHosts[req.HostID]
	s.mu.Unlock()
	if !ok {
		return "InvalidHostID"
	}
	cs.sessionID = pairrecord.NewUUID()
	cs.hostID, cs.host = req.HostID, h
	resp.SessionID = cs.sessionID
	resp.EnableSessionSSL = true
	return ""
}

// enterTLS runs the TLS server handshake on the lockdown stream right after
// the StartSession reply (§5.5). A RecordConn keeps plaintext after a later
// StopSession on the socket (pitfall 23).
func (s *Server) enterTLS(cs *connState) error {
	cfg, err := s.tlsConfig(cs.host)
	if err != nil {
		return err
	}
	tc := tls.Server(lockdown.NewRecordConn(cs.raw), cfg)
	ctx, cancel := context.WithTimeout(s.ctx, tlsTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("lockdownd: session TLS handshake: %w", err)
	}
	cs.tls = tc
	cs.pc = plistconn.New(tc, plistconn.XML)
	return nil
}

// stopSession answers StopSession with Result Success (pitfall 25).
func (s *Server) stopSession(cs *connState, req *lockdown.Request, resp *lockdown.Response) string {
	switch {
	case cs.sessionID == "":
		return "SessionInactive" // [U]
	case req.SessionID == "":
		return "MissingSessionID"
	case req.SessionID != cs.sessionID:
		return "InvalidSessionID"
	}
	cs.sessionID, cs.hostID, cs.host = "", "", hostRecord{}
	resp.Result = "Success"
	return ""
}

// leaveTLS waits for the host's close_notify, answers with its own and
// continues in plaintext (§5.5). A host that closes the socket instead
// (libimobiledevice's tools do) ends the connection.
func (s *Server) leaveTLS(cs *connState) error {
	tc := cs.tls
	cs.tls = nil
	cs.pc = plistconn.New(cs.raw, plistconn.XML)
	_ = tc.SetReadDeadline(time.Now().Add(tlsTimeout))
	var buf [512]byte
	for {
		_, err := tc.Read(buf[:])
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			break // close_notify received
		}
		return errGoodbye // socket closed or broken: nothing more to serve
	}
	if err := tc.CloseWrite(); err != nil {
		return errGoodbye
	}
	// closeNotify leaves a past write deadline on the socket; plaintext
	// continues on it.
	_ = cs.raw.SetDeadline(time.Time{})
	return nil
}

// tlsConfig is the device's TLS server side for host h: DeviceCertificate
// with the device key (or a foreign certificate when WrongCert), a client
// certificate required and checked against the record's HostCertificate or
// RootCertificate (libimobiledevice sends the root, others the host
// certificate, §5.5).
func (s *Server) tlsConfig(h hostRecord) (*tls.Config, error) {
	cert := s.wrongCrt
	if !s.cfg.WrongCert {
		c, err := parseCertPEM(h.DeviceCertificate)
		if err != nil {
			return nil, fmt.Errorf("lockdownd: stored DeviceCertificate: %w", err)
		}
		cert = tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: s.devKey}
	}
	var allowed [][]byte
	for _, p := range [][]byte{h.HostCertificate, h.RootCertificate} {
		if c, err := parseCertPEM(p); err == nil {
			allowed = append(allowed, c.Raw)
		}
	}
	cfg := &tls.Config{
		Certificates:           []tls.Certificate{cert},
		ClientAuth:             tls.RequireAnyClientCert,
		MinVersion:             tls.VersionTLS10,
		SessionTicketsDisabled: true,
	}
	if !s.cfg.AcceptAnyClientCert {
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			for _, a := range allowed {
				if len(raw) > 0 && bytes.Equal(raw[0], a) {
					return nil
				}
			}
			return errors.New("lockdownd: client certificate is not from the pair record")
		}
	}
	if s.cfg.LegacyTLS {
		cfg.MaxVersion = tls.VersionTLS10
		cfg.CipherSuites = []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA}
	}
	return cfg, nil
}

// selfSignedCert makes the certificate WrongCert serves: the device key, but
// not the DeviceCertificate any host generated.
func selfSignedCert(key *rsa.PrivateKey) (tls.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(3650 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("lockdownd: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
