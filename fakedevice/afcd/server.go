// Package afcd is the fake phone's AFC service ("com.apple.afc"): a file
// system rooted in a host directory (the phone's media area, `<phone>/afc/`),
// spoken through the same packet codec as the host client (lockdown/afc).
//
// Wire facts: libimobiledevice-client-needs.md §5.1 and §6 item 12 (echo the
// packet number, non-zero handles, MakeDir on an existing directory is
// success); mobilebackup2-and-backup-format.md §1.1 and §7.1 for the files a
// backup host touches (/com.apple.itunes.lock_sync, /iTunes_Control/iTunes,
// /iTunesRestore).
//
// Path safety: every path is resolved inside the root with os.Root, so ".."
// and symlinks cannot reach outside it.
package afcd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ibackup/ibackup/lockdown/afc"
)

// SyncLockPath is the file hosts lock to hold the phone's sync lock.
const SyncLockPath = "/com.apple.itunes.lock_sync"

// Config describes one phone's AFC service.
type Config struct {
	// Root is the host directory served as "/". It must exist.
	Root string
	// Locks is the phone's lock table, shared by all its AFC connections
	// (and by every Server of the same phone). Nil gives the Server a
	// private table.
	Locks *LockTable
	// Model, TotalBytes and FreeBytes answer GetDeviceInfo.
	Model                 string
	TotalBytes, FreeBytes uint64
	// MaxPayload bounds incoming packets and read requests
	// (afc.DefaultMaxPayload when 0).
	MaxPayload int
}

// Server serves AFC connections for one phone. It is safe for concurrent
// use: each connection runs in the goroutine that calls Serve.
type Server struct {
	cfg    Config
	root   *os.Root
	locks  *LockTable
	handle atomic.Uint64 // last handle number given out, shared by all connections
}

// New opens cfg.Root and makes sure the layout a backup host expects exists:
// /iTunes_Control/iTunes and the (empty) sync lock file, which hosts open
// with mode "r+" and therefore cannot create (§4.2 step 9).
func New(cfg Config) (*Server, error) {
	root, err := os.OpenRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("afcd: %w", err)
	}
	if err := root.MkdirAll("iTunes_Control/iTunes", 0o755); err != nil {
		_ = root.Close()
		return nil, fmt.Errorf("afcd: %w", err)
	}
	f, err := root.OpenFile(strings.TrimPrefix(SyncLockPath, "/"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		_ = root.Close()
		return nil, fmt.Errorf("afcd: %w", err)
	}
	_ = f.Close()
	if cfg.Locks == nil {
		cfg.Locks = NewLockTable()
	}
	if cfg.Model == "" {
		cfg.Model = "iPhone"
	}
	return &Server{cfg: cfg, root: root, locks: cfg.Locks}, nil
}

// Close releases the root directory. Connections still being served fail
// their next file operation.
func (s *Server) Close() error {
	if err := s.root.Close(); err != nil {
		return fmt.Errorf("afcd: %w", err)
	}
	return nil
}

// Locks returns the server's lock table.
func (s *Server) Locks() *LockTable { return s.locks }

// Handler returns s.Serve, the shape lockdownd.Service.Serve expects.
func (s *Server) Handler() func(ctx context.Context, conn net.Conn) error { return s.Serve }

// openFile is one handle; its pointer identifies the lock holder.
type openFile struct {
	path string // cleaned AFC path, the lock table key
	f    *os.File
}

// session is the per-connection state, owned by the Serve goroutine.
type session struct {
	s       *Server
	fr      *afc.Framer
	handles map[uint64]*openFile
}

// Serve answers AFC requests on conn until the host closes it, ctx ends or
// the stream breaks. It closes conn, every handle the connection opened and
// the locks they hold before returning. A clean close by the host returns
// nil.
func (s *Server) Serve(ctx context.Context, conn net.Conn) error {
	var closeOnce sync.Once
	closeConn := func() { closeOnce.Do(func() { _ = conn.Close() }) }
	stop := context.AfterFunc(ctx, closeConn)
	defer stop()
	defer closeConn()

	fr := afc.NewFramer(conn, conn)
	if s.cfg.MaxPayload > 0 {
		fr.MaxPayload = s.cfg.MaxPayload
	}
	ss := &session{s: s, fr: fr, handles: make(map[uint64]*openFile)}
	defer ss.closeAll()
	for {
		req, err := fr.ReadPacket()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				return nil
			}
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("afcd: %w", err)
		}
		reply := ss.handle(req)
		reply.Num = req.Num
		if err := fr.WritePacket(reply); err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("afcd: %w", err)
		}
	}
}

func (ss *session) closeAll() {
	for h, of := range ss.handles {
		ss.s.locks.Release(of.path, of)
		_ = of.f.Close()
		delete(ss.handles, h)
	}
}

// cleanPath maps an AFC path (absolute or relative to "/") to the cleaned
// absolute AFC path and the os.Root-relative name.
func cleanPath(p string) (afcPath, rel string) {
	afcPath = path.Clean("/" + p)
	rel = strings.TrimPrefix(afcPath, "/")
	if rel == "" {
		rel = "."
	}
	return afcPath, rel
}

// statusReply is a STATUS packet with the code in the header data
// (this = entire = 48, §5.1).
func statusReply(st afc.Status) *afc.Packet {
	return &afc.Packet{Op: afc.OpStatus, HeaderData: afc.AppendUint64(nil, uint64(st))}
}

// dataReply is a DATA packet with the bytes as payload (this = 40).
func dataReply(b []byte) *afc.Packet {
	return &afc.Packet{Op: afc.OpData, Payload: b}
}
