package lockdownd

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/ibackup/ibackup/lockdown"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// Server is one simulated device's lockdownd. Lockdown connections are
// served by ServeConn in the caller's goroutine; service connections run in
// goroutines the Server owns and Close waits for.
type Server struct {
	cfg      Config
	log      *slog.Logger
	devKey   *rsa.PrivateKey
	devPub   []byte          // DevicePublicKey value (PEM PKCS#1)
	wrongCrt tls.Certificate // served when WrongCert is set
	services map[string]Service
	unpaired map[string]bool

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // service goroutines

	mu          sync.Mutex // guards everything below
	st          *state
	values      map[string]any
	domains     map[string]map[string]any
	trust       TrustPolicy
	locked      bool
	dialogOpen  bool
	dialogSince time.Time
	nextPort    uint16
}

// New loads or creates the device state at cfg.StatePath and returns a
// server. Config maps are copied.
func New(cfg Config) (*Server, error) {
	st, key, err := loadState(cfg.StatePath, cfg.DeviceKey)
	if err != nil {
		return nil, err
	}
	wrong, err := selfSignedCert(key)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		devKey:   key,
		devPub:   lockdown.EncodeDevicePublicKey(&key.PublicKey),
		wrongCrt: wrong,
		services: map[string]Service{},
		unpaired: map[string]bool{},
		st:       st,
		values:   maps.Clone(cfg.Values),
		domains:  cloneDomains(cfg.Domains),
		trust:    cfg.Trust,
		locked:   cfg.Locked,
		nextPort: cfg.FirstServicePort,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.values == nil {
		s.values = map[string]any{}
	}
	if s.cfg.Now == nil {
		s.cfg.Now = time.Now
	}
	if s.nextPort == 0 {
		s.nextPort = 49152
	}
	for _, svc := range cfg.Services {
		s.services[svc.Name] = svc
	}
	keys := cfg.UnpairedKeys
	if keys == nil {
		keys = DefaultUnpairedKeys
	}
	for _, k := range keys {
		s.unpaired[k] = true
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Close stops service listeners and connections and waits for their
// goroutines. Lockdown connections served by ServeConn are closed too.
func (s *Server) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

// SetLocked changes the simulated passcode lock.
func (s *Server) SetLocked(locked bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.locked = locked
}

// SetTrust changes the simulated user's Trust answer and closes an open dialog.
func (s *Server) SetTrust(p TrustPolicy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trust = p
	s.dialogOpen = false
}

// PairedHosts returns the HostIDs the device trusts, sorted.
func (s *Server) PairedHosts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.st.PairedHosts))
}

// EscrowBag returns the device's escrow bag (what Pair hands out).
func (s *Server) EscrowBag() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.st.EscrowBag)
}

// DevicePublicKey returns the DevicePublicKey value (PEM PKCS#1).
func (s *Server) DevicePublicKey() []byte { return slices.Clone(s.devPub) }

// connState is one lockdown connection's state (§7.3): plaintext, or a
// session with its host and TLS connection.
type connState struct {
	raw       net.Conn
	pc        *plistconn.Conn
	sessionID string
	hostID    string
	host      hostRecord
	tls       *tls.Conn
}

// errGoodbye ends ServeConn cleanly after the Goodbye reply.
var errGoodbye = errors.New("goodbye")

// ServeConn serves one lockdown connection (device port 62078) until the
// host closes it, says Goodbye, ctx ends or the server closes. It closes
// conn before returning. A clean close returns nil.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) error {
	defer conn.Close()
	stop1 := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop1()
	stop2 := context.AfterFunc(s.ctx, func() { conn.Close() })
	defer stop2()
	// Replies are XML starting with "<?xml": libimobiledevice parses
	// nothing else (client-needs §2.1). One request, one reply, in order.
	cs := &connState{raw: conn, pc: plistconn.New(conn, plistconn.XML)}
	for {
		b, err := cs.pc.ReadRaw()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || ctx.Err() != nil || s.ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("lockdownd: %w", err)
		}
		req, err := lockdown.DecodeRequest(b)
		if err != nil {
			return fmt.Errorf("lockdownd: %w", err)
		}
		s.log.Debug("lockdownd request", "request", req.Request, "domain", req.Domain, "key", req.Key, "service", req.Service)
		resp, after := s.handle(cs, req)
		if err := cs.pc.WriteMessage(resp); err != nil {
			return fmt.Errorf("lockdownd: %w", err)
		}
		if after != nil {
			if err := after(); err != nil {
				if errors.Is(err, errGoodbye) {
					return nil
				}
				return err
			}
		}
	}
}

// handle answers one request. after, if non-nil, runs once the reply is
// written (TLS start/stop, Goodbye).
func (s *Server) handle(cs *connState, req *lockdown.Request) (*lockdown.Response, func() error) {
	resp := &lockdown.Response{Request: req.Request}
	var after func() error
	code := ""
	switch req.Request {
	case "QueryType":
		resp.Type = lockdown.TypeLockdown
	case "GetValue":
		resp.Domain, resp.Key = req.Domain, req.Key
		resp.Value, code = s.getValue(cs.sessionID != "", req.Domain, req.Key)
	case "SetValue":
		code = s.setValue(cs.sessionID != "", req)
	case "RemoveValue":
		code = s.removeValue(cs.sessionID != "", req)
	case "Pair":
		resp.EscrowBag, code = s.pair(req)
		if code == "" && s.cfg.OnPaired != nil {
			s.cfg.OnPaired(req.PairRecord.HostID)
		}
	case "ValidatePair":
		code = s.validatePair(req)
	case "Unpair":
		code = s.unpair(req)
		if code == "" && s.cfg.UnpairEchoesValidatePair {
			resp.Request = "ValidatePair"
		}
		if code == "" && s.cfg.OnUnpaired != nil {
			s.cfg.OnUnpaired(req.PairRecord.HostID)
		}
	case "StartSession":
		// The reply goes out in plaintext; TLS starts right after (§5.5).
		code = s.startSession(cs, req, resp)
		if code == "" {
			after = func() error { return s.enterTLS(cs) }
		}
	case "StopSession":
		// The reply goes out inside TLS; then close_notify both ways and
		// plaintext again (§5.5).
		code = s.stopSession(cs, req, resp)
		if code == "" && cs.tls != nil {
			after = func() error { return s.leaveTLS(cs) }
		}
	case "StartService":
		code = s.startService(cs, req, resp)
	case "Goodbye":
		after = func() error { return errGoodbye }
	default:
		code = "InvalidRequest" // string unknown (§7.3) [U]
	}
	if code != "" {
		s.log.Debug("lockdownd error", "request", req.Request, "error", code)
		// Errors carry Request and Error only: libimobiledevice treats any
		// Result as a generic failure (client-needs §2.2).
		return &lockdown.Response{Request: resp.Request, Error: code}, nil
	}
	return resp, after
}

// getValue implements GetValue (§7.3, §7.4). Without a session only the
// unpaired keys and domains are readable; others are GetProhibited [U].
func (s *Server) getValue(inSession bool, domain, key string) (any, string) {
	var live map[string]any
	if domain != "" && s.cfg.LiveValues != nil {
		live = s.cfg.LiveValues(domain)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	open := inSession || s.cfg.OpenValues
	// Root domain: the whole dict (reduced to the unpaired keys outside a
	// session, §7.4) or one key. A key the device does not have is
	// MissingValue (§5.3).
	if domain == "" {
		all := s.rootValues()
		if key == "" {
			if !open {
				for k := range all {
					if !s.unpaired[k] {
						delete(all, k)
					}
				}
			}
			return all, ""
		}
		if !open && !s.unpaired[key] {
			return nil, "GetProhibited"
		}
		v, ok := all[key]
		if !ok {
			return nil, "MissingValue"
		}
		return v, ""
	}
	// Other domains (§5.7): an unknown domain reads as empty, like a
	// domain without values, rather than failing the whole request [U].
	if !open && !unpairedDomains[domain] {
		return nil, "GetProhibited"
	}
	d := s.domains[domain]
	if len(live) > 0 {
		d = maps.Clone(d)
		if d == nil {
			d = map[string]any{}
		}
		maps.Copy(d, live)
	}
	if key == "" {
		return maps.Clone(d), ""
	}
	v, ok := d[key]
	if !ok {
		return nil, "MissingValue"
	}
	return v, ""
}

// rootValues is the root domain with the values lockdownd computes. The
// caller holds s.mu.
func (s *Server) rootValues() map[string]any {
	all := maps.Clone(s.values)
	all["DevicePublicKey"] = s.devPub
	all["PasswordProtected"] = s.locked // locked now, not "has a passcode" (pitfall 26)
	all["TrustedHostAttached"] = len(s.st.PairedHosts) > 0
	return all
}

// writableRoot are the root keys SetValue accepts in a session [U];
// UntrustedHostBUID is also accepted without one (usbmuxd sets it, §7.3).
var writableRoot = map[string]bool{"DeviceName": true, "UntrustedHostBUID": true, "TimeZone": true, "Uses24HourClock": true}

func (s *Server) setValue(inSession bool, req *lockdown.Request) string {
	if req.Key == "" {
		return "MissingKey"
	}
	if req.Value == nil {
		return "MissingValue"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.Domain == "" {
		if !writableRoot[req.Key] || (!inSession && req.Key != "UntrustedHostBUID") {
			return "SetProhibited"
		}
		s.values[req.Key] = req.Value
		return ""
	}
	if !inSession {
		return "SetProhibited"
	}
	if s.domains[req.Domain] == nil {
		s.domains[req.Domain] = map[string]any{}
	}
	s.domains[req.Domain][req.Key] = req.Value
	return ""
}

func (s *Server) removeValue(inSession bool, req *lockdown.Request) string {
	if req.Key == "" {
		return "MissingKey"
	}
	if req.Domain == "" || !inSession {
		return "RemoveProhibited"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.domains[req.Domain][req.Key]; !ok {
		return "MissingValue"
	}
	delete(s.domains[req.Domain], req.Key)
	return ""
}
