package lockdown

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ibackup/ibackup/lockdown/pairrecord"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// legacyCipherSuites are the TLS 1.0–1.2 suites the host offers: Go's
// secure defaults plus the RSA-key-exchange CBC suites that Go 1.22
// dropped from its default list, which old devices may need
// (usb-usbmux-lockdown.md pitfall 19).
var legacyCipherSuites = []uint16{
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_RSA_WITH_AES_256_CBC_SHA,
}

// TLSConfig returns the client TLS configuration for a session or service
// with record rec (§5.5): the host certificate and key as client
// certificate (pymobiledevice3/go-ios; the device accepts the root
// certificate too), TLS 1.0 as the minimum with RSA key exchange allowed
// for old devices, no chain or hostname checks, and the device's
// certificate compared byte for byte with rec.DeviceCertificate — a
// mismatch fails the handshake with ErrDeviceCertMismatch (STYLE rule 5).
//
// Go cannot offer SHA-1 signature algorithms in TLS 1.2 without a GODEBUG
// setting (pitfall 19); devices old enough to need them speak TLS 1.0,
// which Go still signs with MD5+SHA-1.
func TLSConfig(rec *pairrecord.Record) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(rec.HostCertificate, rec.HostPrivateKey)
	if err != nil {
		// X509KeyPair error texts never include key bytes.
		return nil, fmt.Errorf("lockdown: pair record host certificate/key unusable: %w", err)
	}
	want, err := certDER(rec.DeviceCertificate)
	if err != nil {
		return nil, fmt.Errorf("lockdown: pair record DeviceCertificate: %w", err)
	}
	return &tls.Config{
		// Always present the certificate, as OpenSSL-based clients do: Go
		// would otherwise withhold it when the device's CertificateRequest
		// names CAs or signature schemes it does not match.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
		InsecureSkipVerify:   true, // replaced by the exact comparison below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], want) {
				return ErrDeviceCertMismatch
			}
			return nil
		},
		MinVersion:             tls.VersionTLS10,
		CipherSuites:           legacyCipherSuites,
		SessionTicketsDisabled: true,
	}, nil
}

// StartSession starts a lockdown session with the pair record rec and, when
// the device asks for it (EnableSessionSSL), wraps the connection in TLS
// once; every later request travels inside it (§5.5, STYLE rule 5).
// A device certificate that differs from rec.DeviceCertificate fails with
// ErrDeviceCertMismatch; an unknown HostID with ErrInvalidHostID. After a
// failed TLS handshake the connection is unusable: Close the Client.
func (c *Client) StartSession(ctx context.Context, rec *pairrecord.Record) error {
	if rec == nil {
		return errors.New("lockdown: StartSession needs a pair record")
	}
	if err := rec.Validate(); err != nil {
		return fmt.Errorf("lockdown: %w", err)
	}
	cfg, err := TLSConfig(rec)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessionID != "" {
		return &Error{Request: "StartSession", Code: "SessionActive"}
	}
	resp, err := c.exchange(ctx, &Request{Request: "StartSession", HostID: rec.HostID, SystemBUID: rec.SystemBUID}, "StartSession")
	if err != nil {
		return err
	}
	c.sessionID = resp.SessionID
	c.record = rec
	if !resp.EnableSessionSSL {
		return nil
	}
	c.capTLS(cfg)
	tc := tls.Client(NewRecordConn(c.raw), cfg)
	hctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		// The connection is unusable after a failed handshake.
		c.sessionID = ""
		c.record = nil
		if errors.Is(err, ErrDeviceCertMismatch) {
			return ErrDeviceCertMismatch
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("lockdown: TLS handshake: device closed the connection (stale pair record? pitfall 20): %w", err)
		}
		return fmt.Errorf("lockdown: TLS handshake: %w", err)
	}
	c.tls = tc
	c.pc = plistconn.New(tc, plistconn.XML)
	c.log.Debug("lockdown session started", "tls", tc.ConnectionState().Version)
	return nil
}

// capTLS limits TLS to 1.0 when the device reported a ProductVersion below
// 10, as libimobiledevice does (libimobiledevice-client-needs.md §2.5), so
// old TLS stacks never see a TLS 1.3 ClientHello. The caller holds c.mu.
func (c *Client) capTLS(cfg *tls.Config) {
	if c.version != "" && major(c.version) < 10 {
		cfg.MaxVersion = tls.VersionTLS10
	}
}

// InSession reports whether a session is running.
func (c *Client) InSession() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessionID != ""
}

// StopSession ends the session. The reply is read inside TLS; then both
// ends exchange close_notify and the connection continues in plaintext
// (§5.5). A RecordConn under TLS keeps plaintext that follows the last
// record on the socket (pitfall 23).
func (c *Client) StopSession(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessionID == "" {
		return ErrNoSession
	}
	_, err := c.exchange(ctx, &Request{Request: "StopSession", SessionID: c.sessionID}, "StopSession")
	c.sessionID = ""
	c.record = nil
	if c.tls == nil {
		return err
	}
	tc := c.tls
	c.tls = nil
	c.pc = plistconn.New(c.raw, plistconn.XML)
	if cerr := c.leaveTLS(ctx, tc); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// leaveTLS sends close_notify and consumes the device's, leaving the raw
// connection positioned at the next plaintext byte. A device that closes
// the socket instead is treated as normal (pitfall 21).
func (c *Client) leaveTLS(ctx context.Context, tc *tls.Conn) error {
	if err := tc.CloseWrite(); err != nil {
		return fmt.Errorf("lockdown: StopSession: sending close_notify: %w", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = tc.SetReadDeadline(deadline)
	// crypto/tls leaves a past write deadline after close_notify.
	defer func() { _ = c.raw.SetDeadline(time.Time{}) }()
	var buf [512]byte
	for {
		_, err := tc.Read(buf[:])
		if err == nil {
			continue // stray application data after the reply: discard
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		return fmt.Errorf("lockdown: StopSession: waiting for close_notify: %w", err)
	}
}

// TLSState returns the session's TLS connection state; ok is false when
// the session runs without TLS or no session is running.
func (c *Client) TLSState() (state tls.ConnectionState, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tls == nil {
		return tls.ConnectionState{}, false
	}
	return c.tls.ConnectionState(), true
}

// StartService asks lockdownd to start the service name and connects to the
// port it answers through d (usb-usbmux-lockdown.md §5.6). With escrow the
// session's pair record EscrowBag is sent (com.apple.mobilebackup2 needs
// it); a record without one fails with ErrNoEscrowBag before anything is
// sent. When the reply says EnableServiceSSL the returned connection is
// TLS-wrapped with the session's client certificate and checked against
// DeviceCertificate like the session (ErrDeviceCertMismatch).
//
// Needs a session (ErrNoSession otherwise). The caller owns the returned
// connection.
func (c *Client) StartService(ctx context.Context, d Dialer, name string, escrow bool) (net.Conn, error) {
	c.mu.Lock()
	rec := c.record
	if c.sessionID == "" || rec == nil {
		c.mu.Unlock()
		return nil, ErrNoSession
	}
	req := &Request{Request: "StartService", Service: name}
	if escrow {
		if len(rec.EscrowBag) == 0 {
			c.mu.Unlock()
			return nil, ErrNoEscrowBag
		}
		req.EscrowBag = rec.EscrowBag
	}
	resp, err := c.exchange(ctx, req, "StartService")
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if resp.Port == 0 || resp.Port > 65535 {
		return nil, fmt.Errorf("lockdown: StartService %s: invalid port %d", name, resp.Port)
	}
	conn, err := d.Dial(ctx, uint16(resp.Port))
	if err != nil {
		return nil, fmt.Errorf("lockdown: connecting to %s on port %d: %w", name, resp.Port, err)
	}
	if !resp.EnableServiceSSL {
		return conn, nil
	}
	cfg, err := TLSConfig(rec)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.mu.Lock()
	c.capTLS(cfg)
	c.mu.Unlock()
	tc := tls.Client(conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		conn.Close()
		if errors.Is(err, ErrDeviceCertMismatch) {
			return nil, fmt.Errorf("lockdown: service %s: %w", name, ErrDeviceCertMismatch)
		}
		return nil, fmt.Errorf("lockdown: service %s: TLS handshake: %w", name, err)
	}
	return tc, nil
}
