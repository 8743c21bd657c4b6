package backupagent

// UploadFiles batches with fault injection, and the metadata files the
// phone writes (§3.3, §4.3 steps 8–9, §5.4–5.5).

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/devicelink"
)

// upload sends one DLMessageUploadFiles batch (§3.3) and returns the host's
// status and the host paths of files that ended with ERROR_REMOTE.
func (a *agent) upload(files []upFile) (*devicelink.Status, []string, error) {
	var total int64
	for _, f := range files {
		total += f.size + int64(len(f.data))
	}
	if err := a.dl.Write(devicelink.MsgUploadFiles, map[string]any{}, a.pct, uint64(total)); err != nil {
		return nil, nil, fmt.Errorf("backupagent: %w", err)
	}
	w := a.dl.Stream()
	var remote []string
	for _, f := range files {
		if f.n > 0 && a.cfg.Faults.OnFile != nil {
			a.cfg.Faults.OnFile(f.n)
		}
		if err := devicelink.WriteName(w, f.dev); err != nil {
			return nil, nil, fmt.Errorf("backupagent: %w", err)
		}
		if err := devicelink.WriteName(w, f.host); err != nil {
			return nil, nil, fmt.Errorf("backupagent: %w", err)
		}
		r, closeFn, err := f.open()
		if err != nil {
			// The file vanished or is unreadable: what a phone does.
			if err := devicelink.WriteFrame(w, devicelink.CodeErrorRemote, []byte(err.Error())); err != nil {
				return nil, nil, fmt.Errorf("backupagent: %w", err)
			}
			remote = append(remote, f.host)
			continue
		}
		err = a.sendContent(w, f, r)
		closeFn()
		if errors.Is(err, errRemote) {
			remote = append(remote, f.host)
		} else if err != nil {
			return nil, nil, err
		}
	}
	if err := devicelink.WriteEnd(w); err != nil {
		return nil, nil, fmt.Errorf("backupagent: %w", err)
	}
	st, err := a.readStatus()
	return st, remote, err
}

var errRemote = errors.New("remote error sent")

// sendContent sends one file with the configured faults.
func (a *agent) sendContent(w io.Writer, f upFile, r io.Reader) error {
	fl := a.cfg.Faults
	switch {
	case f.n > 0 && f.n == fl.DropMidFile:
		half := make([]byte, max(f.size/2, 1))
		k, _ := io.ReadFull(r, half)
		_ = devicelink.WriteFrame(w, devicelink.CodeFileData, half[:k])
		a.conn.Close()
		return errDropped
	case f.n > 0 && f.n == fl.RemoteErrorFile:
		half := make([]byte, f.size/2)
		k, _ := io.ReadFull(r, half)
		if err := devicelink.WriteFrame(w, devicelink.CodeFileData, half[:k]); err != nil {
			return fmt.Errorf("backupagent: %w", err)
		}
		if err := devicelink.WriteFrame(w, devicelink.CodeErrorRemote, []byte("Input/output error (5)")); err != nil {
			return fmt.Errorf("backupagent: %w", err)
		}
		return errRemote
	case f.n > 0 && f.n == fl.TruncateFile:
		r = io.LimitReader(r, f.size/2)
	}
	if _, err := devicelink.SendFile(w, r); err != nil {
		return fmt.Errorf("backupagent: %w", err)
	}
	return nil
}

func (f upFile) open() (io.Reader, func(), error) {
	if f.src == "" {
		return bytes.NewReader(f.data), func() {}, nil
	}
	fh, err := os.Open(f.src)
	if err != nil {
		return nil, nil, err
	}
	if f.key == nil {
		return fh, func() { fh.Close() }, nil
	}
	r, err := newEncryptReader(fh, f.key)
	if err != nil {
		fh.Close()
		return nil, nil, err
	}
	return r, func() { fh.Close() }, nil
}

// readManifest opens downloaded Manifest.db bytes and returns fileID → MBFile.
func (a *agent) readManifest(b []byte) (map[string]*backupfmt.MBFile, error) {
	if len(b) == 0 {
		return nil, errors.New("backupagent: no Manifest.db")
	}
	if isMBDB(b) {
		rows, err := decodeMBDB(b)
		if err != nil {
			return nil, err
		}
		out := map[string]*backupfmt.MBFile{}
		for _, r := range rows {
			out[r.FileID] = r.File
		}
		return out, nil
	}
	p := filepath.Join(a.cfg.WorkDir, "host-Manifest.db")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return nil, fmt.Errorf("backupagent: %w", err)
	}
	defer os.Remove(p)
	db, err := backupfmt.OpenManifestDB(p)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	out := map[string]*backupfmt.MBFile{}
	err = db.Each(func(r backupfmt.Record) error {
		if r.File != nil {
			out[r.FileID] = r.File
		}
		return nil
	})
	return out, err
}

// writeManifest builds Manifest.db for items and returns its bytes.
func (a *agent) writeManifest(items []item) ([]byte, error) {
	if a.cfg.MBDB {
		return encodeMBDB(items)
	}
	p := filepath.Join(a.cfg.WorkDir, "Manifest.db")
	w, err := backupfmt.CreateManifestDB(p)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		if err := w.Add(it.rec); err != nil {
			w.Abort()
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	defer os.Remove(p)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("backupagent: %w", err)
	}
	return b, nil
}

// manifestPlist builds Manifest.plist (§5.4); for an encrypted backup it
// carries IsEncrypted, the keybag and the ManifestKey (§6.1, §6.3).
func (a *agent) manifestPlist(cr *cryptor, manifestKey []byte) ([]byte, error) {
	m := &backupfmt.Manifest{Version: a.manifestVersion(), SystemDomainsVersion: a.cfg.SystemDomainsVersion,
		Date: a.cfg.Now().UTC(), Lockdown: a.cfg.Lockdown, BackupKeyBag: []byte{}}
	if cr != nil {
		m.IsEncrypted, m.BackupKeyBag, m.ManifestKey = true, cr.kbBytes, manifestKey
	}
	return m.Marshal()
}
