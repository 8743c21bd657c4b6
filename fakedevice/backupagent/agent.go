// Package backupagent is the fake phone's BackupAgent: the device side of
// com.apple.mobilebackup2. It speaks DeviceLink (devicelink package), makes
// backups of a content tree (<ContentDir>/<Domain>/<relativePath>) following
// the device's own choreography (mobilebackup2-and-backup-format.md §4.3 and
// §9), decides full vs incremental from the host's Status.plist and
// Manifest.db, checks the host's directory at the end (205 when it lies),
// and injects faults on request.
//
// An incremental backup costs what changed plus the manifest, as on a
// device: the new Manifest.db is the previous one with the changed rows
// applied in one transaction, and with a Cache (the device's per-backup
// cache keyed by the Status UUID, §4.1) files whose lstat identity is
// unchanged are neither decoded from the old manifest nor read again.
// Content digests are computed while files are sent.
//
// When the phone's backup password is set (Encryption) its backups are
// encrypted like a real phone's (§6): a keybag of both KDF generations,
// per-file keys wrapped with class keys, AES-256-CBC content and, from iOS
// 10.2, an encrypted Manifest.db. Restores of encrypted backups are
// unlocked with the request's password (207 when wrong), and ChangePassword
// turns encryption on, off or changes the password (§6.5).
//
// It also satisfies idevicebackup2 1.3.0 (libimobiledevice-client-needs.md
// §4.7): that host never answers DLMessagePurgeDiskSpace, so the agent only
// sends it when Config.Purge is set.
package backupagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/ibackup/ibackup/lockdown/plistconn"
	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/devicelink"
)

// Config describes the fake phone's backup service.
type Config struct {
	// ContentDir holds the phone's files as <Domain>/<relativePath>
	// (regular files, directories and symlinks).
	ContentDir string
	// WorkDir is scratch space for Manifest.db files ("" = a temporary
	// directory per session).
	WorkDir string
	// DLMajor/DLMinor are the DeviceLink version sent first (default 400.0).
	DLMajor, DLMinor int64
	// ProtocolVersion is the mobilebackup2 version (default 2.1).
	ProtocolVersion float64
	// Lockdown is the identity written into Manifest.plist.
	Lockdown backupfmt.Lockdown
	// SystemDomainsVersion for Manifest.plist (default "24.0").
	SystemDomainsVersion string
	// MBDB makes backups in the iOS 5–9 format: Manifest.mbdb, files flat
	// as <UDID>/<fileID>, Status.plist Version "2.4", Manifest.plist
	// Version "9.1" (§5.7). Restores accept both formats either way.
	MBDB bool
	// BatchSize is the number of files per UploadFiles/MoveItems (default 128).
	BatchSize int
	// NoDigest leaves MBFile.Digest empty, as many modern devices do.
	NoDigest bool
	// Purge makes the agent send DLMessagePurgeDiskSpace when the host is
	// short of space (iOS 14+; idevicebackup2 1.3.0 never answers it).
	Purge bool
	// SpaceMargin is added to the upload size in the free-space check
	// (default 128 MiB as on a real device, §4.2; -1 for none).
	SpaceMargin int64
	// Faults injects failures.
	Faults Faults
	// State keeps a restore that waits for a reboot across sessions
	// (nil = restores apply at once and 102 is never reported).
	State *State
	// Encryption is the phone's backup-encryption setting, shared by all
	// sessions of the phone (see NewEncryption). When nil, a per-session
	// setting is made from BackupPassword with device-default KDF rounds,
	// and ChangePassword is refused (error 1: nothing could keep the change).
	Encryption *Encryption
	// Cache is the phone's backup cache, shared by all sessions of the
	// phone (see NewCache; nil = none: every incremental backup decodes the
	// host's Manifest.db and re-reads unchanged files to compare digests).
	Cache *Cache
	// BackupPassword is the phone's backup password when Encryption is nil
	// ("" = backups are not encrypted).
	BackupPassword string
	// ConfirmPasscode, when set, is the passcode prompt a ChangePassword
	// shows first (iOS 13+, §6.5): false = nobody entered it (MBError 208).
	ConfirmPasscode func(ctx context.Context) bool
	// Now returns the time (default time.Now).
	Now func() time.Time
	// Logger receives debug messages (nil = discard).
	Logger *slog.Logger
}

// Faults are failure toggles; file numbers count content files of one
// backup (uploaded) or restore (downloaded) from 1 (0 = off). During a
// restore DropMidFile drops the link after file N and FinalError ends the
// restore after Status.plist was read.
type Faults struct {
	// DropMidFile closes the connection in the middle of file N.
	DropMidFile int
	// RemoteErrorFile sends half of file N then CODE_ERROR_REMOTE
	// "Input/output error (5)"; the backup then ends with 104.
	RemoteErrorFile int
	// TruncateFile sends only half of file N, then SUCCESS.
	TruncateFile int
	// WrongDigestFile records a wrong Digest for file N in Manifest.db.
	WrongDigestFile int
	// FinalError ends the backup with this MBErrorDomain code right after
	// reading Status.plist (208 passcode, 105 disk space, 3 leftover
	// snapshot, ...).
	FinalError int
	// IgnoreFreeSpace skips the free-space check (to reach a full disk
	// while writing).
	IgnoreFreeSpace bool
	// HelloError answers Hello with this ErrorCode.
	HelloError int
	// DeviceFull: the phone itself is out of storage. A backup ends at once
	// with MBError 106 (the phone cannot create its snapshot) and a restore
	// with 106 "Insufficient free disk space on device to restore" at the
	// device's free-space check (§2.5, §7.2 step 5).
	DeviceFull bool
	// OnFile is called before content file N is sent (test hook; it may block).
	OnFile func(n int)
}

// Serve runs one mobilebackup2 session on conn until the host disconnects
// or ctx ends. It closes conn.
func Serve(ctx context.Context, conn net.Conn, cfg Config) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	a := &agent{cfg: cfg, conn: conn, dl: devicelink.NewConn(conn, plistconn.Binary), ctx: ctx}
	a.defaults()
	a.enc = cfg.Encryption
	if a.enc == nil {
		a.encEphemeral = true
		var err error
		a.enc, err = NewEncryption(EncryptionConfig{Password: cfg.BackupPassword,
			NoDP: !EncryptsManifest(cfg.Lockdown.ProductVersion)})
		if err != nil {
			return err
		}
	}
	if a.cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "backupagent-*")
		if err != nil {
			return fmt.Errorf("backupagent: %w", err)
		}
		defer os.RemoveAll(d)
		a.cfg.WorkDir = d
	}
	err := a.session()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// errDropped is returned after the DropMidFile fault closed the link.
var errDropped = errors.New("backupagent: link dropped (fault)")

type agent struct {
	cfg Config
	ctx context.Context
	enc *Encryption
	// encEphemeral: enc was made for this session only (Config.Encryption nil).
	encEphemeral bool
	conn         net.Conn
	dl           *devicelink.Conn
	log          *slog.Logger
	pct          float64
	// restoreFlat: the backup being restored keeps its files flat
	// (<UDID>/<fileID>, Manifest.mbdb era, §5.7).
	restoreFlat bool
}

func (a *agent) defaults() {
	if a.cfg.DLMajor == 0 {
		a.cfg.DLMajor = 400
	}
	if a.cfg.ProtocolVersion == 0 {
		a.cfg.ProtocolVersion = 2.1
	}
	if a.cfg.BatchSize <= 0 {
		a.cfg.BatchSize = 128
	}
	if a.cfg.SpaceMargin == 0 {
		a.cfg.SpaceMargin = 128 << 20
	} else if a.cfg.SpaceMargin < 0 {
		a.cfg.SpaceMargin = 0
	}
	if a.cfg.SystemDomainsVersion == "" {
		a.cfg.SystemDomainsVersion = "24.0"
	}
	if a.cfg.Now == nil {
		a.cfg.Now = time.Now
	}
	a.log = a.cfg.Logger
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
}

// session: version exchange, Hello, one request (§9).
func (a *agent) session() error {
	if err := a.dl.AcceptVersionExchange(a.cfg.DLMajor, a.cfg.DLMinor); err != nil {
		return fmt.Errorf("backupagent: %w", err)
	}
	m, err := a.dl.Read()
	if err != nil {
		return fmt.Errorf("backupagent: %w", err)
	}
	d, _ := m.Arg(0).(map[string]any)
	if m.Name != devicelink.MsgProcessMessage || d["MessageName"] != "Hello" {
		return fmt.Errorf("backupagent: expected Hello, got %s", m.Name)
	}
	code := int64(a.cfg.Faults.HelloError)
	if code == 0 && !offers(d["SupportedProtocolVersions"], a.cfg.ProtocolVersion) {
		code = 1
	}
	reply := map[string]any{"MessageName": "Response", "ErrorCode": code}
	if code == 0 {
		reply["ProtocolVersion"] = a.cfg.ProtocolVersion
	}
	if err := a.dl.WriteProcessMessage(reply); err != nil {
		return fmt.Errorf("backupagent: %w", err)
	}
	if code != 0 {
		return a.waitDisconnect()
	}
	for {
		m, err := a.dl.Read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("backupagent: %w", err)
		}
		if m.Name == devicelink.MsgDisconnect {
			return nil
		}
		req, _ := m.Arg(0).(map[string]any)
		if m.Name != devicelink.MsgProcessMessage || req == nil {
			return fmt.Errorf("backupagent: unexpected %s", m.Name)
		}
		switch req["MessageName"] {
		case "Backup":
			err = a.backup(req)
		case "Restore":
			err = a.restore(req)
		case "ChangePassword":
			err = a.changePassword(req)
		default:
			err = a.finish(1, fmt.Sprintf("Unsupported request %v", req["MessageName"]))
		}
		if err != nil {
			return err
		}
	}
}

func offers(v any, want float64) bool {
	list, _ := v.([]any)
	for _, x := range list {
		if f, ok := devicelink.Float(x); ok && f == want {
			return true
		}
	}
	return false
}

// finish sends the final result (§2.5).
func (a *agent) finish(code int64, desc string) error {
	d := map[string]any{"MessageName": "Response", "ErrorCode": code}
	if desc != "" {
		d["ErrorDescription"] = desc
	}
	if err := a.dl.WriteProcessMessage(d); err != nil {
		return fmt.Errorf("backupagent: %w", err)
	}
	return nil
}

// waitDisconnect reads until DLMessageDisconnect or EOF.
func (a *agent) waitDisconnect() error {
	for {
		m, err := a.dl.Read()
		if err != nil || m.Name == devicelink.MsgDisconnect {
			return nil
		}
	}
}

// status sends a request and reads the host's DLMessageStatusResponse.
func (a *agent) request(name string, args ...any) (*devicelink.Status, error) {
	if err := a.dl.Write(name, args...); err != nil {
		return nil, fmt.Errorf("backupagent: %w", err)
	}
	return a.readStatus()
}

func (a *agent) readStatus() (*devicelink.Status, error) {
	m, err := a.dl.Read()
	if err != nil {
		return nil, fmt.Errorf("backupagent: %w", err)
	}
	st, err := devicelink.ParseStatus(m)
	if err != nil {
		return nil, fmt.Errorf("backupagent: %w", err)
	}
	return st, nil
}
