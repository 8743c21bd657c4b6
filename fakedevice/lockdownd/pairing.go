package lockdownd

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"

	"github.com/ibackup/ibackup/lockdown"
)

// pair runs the Trust flow for a Pair request (§5.4, §7.2–7.3) and returns
// the escrow bag or a lockdown error string.
func (s *Server) pair(req *lockdown.Request) ([]byte, string) {
	pr := req.PairRecord
	if pr == nil {
		return nil, "MissingPairRecord"
	}
	if code := s.checkPairRecord(pr); code != "" {
		return nil, code
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// A locked phone cannot show the Trust dialog: real devices answer
	// PasswordProtected before anything else (§5.4 step 5, pitfall 26).
	if s.locked {
		return nil, "PasswordProtected" // the dialog needs an unlocked device
	}
	if h, ok := s.st.PairedHosts[pr.HostID]; ok &&
		bytes.Equal(h.HostCertificate, pr.HostCertificate) && bytes.Equal(h.DeviceCertificate, pr.DeviceCertificate) {
		return s.st.EscrowBag, "" // already trusted: no dialog
	}
	// The simulated user. With ExtendedPairingErrors a real device answers
	// PairingDialogResponsePending while the dialog is up and the host
	// repeats the same Pair request (§5.4 step 5, pitfall 13, pitfall 30).
	switch s.trust.Mode {
	case TrustDeny:
		s.dialogOpen = false
		return nil, "UserDeniedPairing"
	case TrustNever:
		s.dialogOpen = true
		return nil, "PairingDialogResponsePending"
	}
	// Delayed accept: the first Pair opens the dialog; the answer comes
	// Delay later on the injected clock, whichever connection asks then.
	if s.trust.Delay > 0 {
		now := s.cfg.Now()
		if !s.dialogOpen {
			s.dialogOpen, s.dialogSince = true, now
		}
		if now.Sub(s.dialogSince) < s.trust.Delay {
			return nil, "PairingDialogResponsePending"
		}
	}
	// Trusted: remember the host's certificates (the TLS server presents
	// DeviceCertificate and accepts HostCertificate or RootCertificate
	// from this host later, §7.2–7.3) and hand out the escrow bag
	// libimobiledevice needs for mobilebackup2 (client-needs §2.6).
	s.dialogOpen = false
	s.st.PairedHosts[pr.HostID] = hostRecord{
		HostCertificate:   pr.HostCertificate,
		RootCertificate:   pr.RootCertificate,
		DeviceCertificate: pr.DeviceCertificate,
		SystemBUID:        pr.SystemBUID,
		HostName:          req.HostName,
	}
	if err := s.st.save(s.cfg.StatePath); err != nil {
		delete(s.st.PairedHosts, pr.HostID)
		s.log.Debug("lockdownd: saving state failed", "err", err)
		return nil, "SavePairRecordFailed"
	}
	return s.st.EscrowBag, ""
}

// checkPairRecord validates a Pair request's record: HostID and the three
// certificates present and parsable, and (unless AcceptForeignDeviceCert)
// DeviceCertificate certifying this device's key (§7.3 [I]).
func (s *Server) checkPairRecord(pr *lockdown.PairRecordMsg) string {
	if pr.HostID == "" {
		return "InvalidPairRecord"
	}
	for _, c := range [][]byte{pr.HostCertificate, pr.RootCertificate, pr.DeviceCertificate} {
		if _, err := parseCertPEM(c); err != nil {
			return "InvalidPairRecord"
		}
	}
	if !s.cfg.AcceptForeignDeviceCert && !lockdown.CertificateMatchesKey(pr.DeviceCertificate, &s.devKey.PublicKey) {
		return "InvalidPairRecord"
	}
	return ""
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errNotPEM
	}
	return x509.ParseCertificate(blk.Bytes)
}

// validatePair answers ValidatePair: success if the HostID is trusted.
// Only hosts talking to iOS < 7 send it (client-needs §2.4 step 6); the
// certificates are not compared, as the HostID is what the device keys on.
func (s *Server) validatePair(req *lockdown.Request) string {
	if req.PairRecord == nil || req.PairRecord.HostID == "" {
		return "MissingHostID"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.st.PairedHosts[req.PairRecord.HostID]; !ok {
		return "InvalidHostID"
	}
	return ""
}

// unpair forgets the HostID (§7.3). Open sessions of that host keep
// running until they end, as on a phone whose trust is reset mid-session;
// the next StartSession gets InvalidHostID (§7.6).
func (s *Server) unpair(req *lockdown.Request) string {
	if req.PairRecord == nil || req.PairRecord.HostID == "" {
		return "MissingHostID"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.st.PairedHosts[req.PairRecord.HostID]
	if !ok {
		return "InvalidHostID"
	}
	delete(s.st.PairedHosts, req.PairRecord.HostID)
	if err := s.st.save(s.cfg.StatePath); err != nil {
		s.st.PairedHosts[req.PairRecord.HostID] = h
		return "SavePairRecordFailed"
	}
	return ""
}
