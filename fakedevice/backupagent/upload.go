package backupagent

// UploadFiles batches with fault injection, and the metadata files the
// phone writes (§3.3, §4.3 steps 8–9, §5.4–5.5).

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

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
	// Frames go out in whole TLS records (uploadBuffer is a multiple of
	// 16 KiB): a 32 KiB data frame written alone became two full records and
	// a 5-byte one, each its own mux packet.
	w := bufio.NewWriterSize(a.dl.Stream(), uploadBuffer)
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
		h, err := a.digester(f)
		if err != nil {
			return nil, nil, err
		}
		r, closeFn, err := f.open(h)
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
		a.setDigest(f, h)
	}
	if err := devicelink.WriteEnd(w); err != nil {
		return nil, nil, fmt.Errorf("backupagent: %w", err)
	}
	if err := w.Flush(); err != nil {
		return nil, nil, fmt.Errorf("backupagent: %w", err)
	}
	st, err := a.readStatus()
	return st, remote, err
}

var errRemote = errors.New("remote error sent")

// uploadBuffer is the write buffer of an UploadFiles stream: four full TLS
// records.
const uploadBuffer = 64 << 10

// sendContent sends one file with the configured faults.
func (a *agent) sendContent(w *bufio.Writer, f upFile, r io.Reader) error {
	fl := a.cfg.Faults
	switch {
	case f.n > 0 && f.n == fl.DropMidFile:
		half := make([]byte, max(f.size/2, 1))
		k, _ := io.ReadFull(r, half)
		_ = devicelink.WriteFrame(w, devicelink.CodeFileData, half[:k])
		_ = w.Flush() // the host sees the first half, then the link drops
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

// digester returns the hash to feed with a content file's plaintext while
// it is sent, or nil when its digest is not needed or was taken already.
// Files that a fault sends incompletely are hashed whole beforehand, so the
// manifest records the file's true digest (§5.5).
func (a *agent) digester(f upFile) (hash.Hash, error) {
	if f.file == nil || a.cfg.NoDigest {
		return nil, nil
	}
	if fl := a.cfg.Faults; f.n == fl.TruncateFile || f.n == fl.RemoteErrorFile || f.n == fl.DropMidFile {
		d, err := sha1File(f.src)
		if err == nil {
			f.file.Digest = d
		}
		return nil, nil
	}
	return newSHA1(), nil
}

// setDigest records the digest of a sent content file (and the
// WrongDigestFile fault).
func (a *agent) setDigest(f upFile, h hash.Hash) {
	if f.file == nil {
		return
	}
	if h != nil {
		f.file.Digest = h.Sum(nil)
	}
	if f.n == a.cfg.Faults.WrongDigestFile {
		f.file.Digest = sha1Sum([]byte("wrong"))
	}
}

// open returns the bytes to send; h, when set, sees the plaintext.
func (f upFile) open(h hash.Hash) (io.Reader, func(), error) {
	if f.src == "" {
		return bytes.NewReader(f.data), func() {}, nil
	}
	fh, err := os.Open(f.src)
	if err != nil {
		return nil, nil, err
	}
	var src io.Reader = fh
	if h != nil {
		src = io.TeeReader(fh, h)
	}
	if f.key == nil {
		return src, func() { fh.Close() }, nil
	}
	r, err := newEncryptReader(src, f.key)
	if err != nil {
		fh.Close()
		return nil, nil, err
	}
	return r, func() { fh.Close() }, nil
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
