package backupagent

// Encrypted backups and restores on the phone side, and the ChangePassword
// request (mobilebackup2-and-backup-format.md §6.3–§6.5). All cryptography
// is the keybag package's; this file only decides what is encrypted with
// which key, as BackupAgent2 does.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/keybag"
)

// manifestKeyClass is the protection class of the Manifest.db key ("usually
// 4", §6.3).
const manifestKeyClass = keybag.ClassNone

// cryptor holds the keys of one encrypted backup or restore.
type cryptor struct {
	kbBytes []byte
	kb      *keybag.Keybag
	keys    *keybag.ClassKeys
	// manifest: Manifest.db is encrypted too (iOS 10.2+, §6.3).
	manifest bool
}

// newFileKey returns a fresh per-file key and its EncryptionKey value
// (class u32 LE + wrapped key, §6.4).
func (c *cryptor) newFileKey(class int) (key, wrapped []byte, err error) {
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, nil, fmt.Errorf("backupagent: %w", err)
	}
	if wrapped, err = c.keys.WrapKey(uint32(class), key); err != nil {
		return nil, nil, fmt.Errorf("backupagent: %w", err)
	}
	return key, wrapped, nil
}

// encryptDB encrypts Manifest.db bytes under a fresh key and returns the
// ciphertext and the ManifestKey value (§6.3).
func (c *cryptor) encryptDB(plain []byte) (ct, manifestKey []byte, err error) {
	key, wrapped, err := c.newFileKey(manifestKeyClass)
	if err != nil {
		return nil, nil, err
	}
	ct, err = keybag.Encrypt(key, plain)
	if err != nil {
		return nil, nil, fmt.Errorf("backupagent: %w", err)
	}
	return ct, wrapped, nil
}

// decryptDB decrypts a Manifest.db read from the host; a plain SQLite file
// (no ManifestKey, iOS < 10.2) is returned as is.
func (c *cryptor) decryptDB(b, manifestKey []byte) ([]byte, error) {
	if len(manifestKey) == 0 {
		return b, nil
	}
	key, err := c.keys.UnwrapKey(manifestKey)
	if err != nil {
		return nil, fmt.Errorf("backupagent: ManifestKey: %w", err)
	}
	plain, err := keybag.Decrypt(key, b)
	if err != nil {
		return nil, fmt.Errorf("backupagent: Manifest.db: %w", err)
	}
	return plain, nil
}

// fileKey unwraps a record's EncryptionKey, falling back to its
// ProtectionClass when the prefix names no usable class (§6.4).
func (c *cryptor) fileKey(f *backupfmt.MBFile) ([]byte, error) {
	if f == nil || len(f.EncryptionKey) != keybag.WrappedKeyLen {
		return nil, errors.New("backupagent: file without EncryptionKey")
	}
	k, err := c.keys.UnwrapKey(f.EncryptionKey)
	if err != nil && f.ProtectionClass > 0 {
		k, err = c.keys.UnwrapKeyClass(uint32(f.ProtectionClass), f.EncryptionKey[4:])
	}
	return k, err
}

// paddedSize is the stored size of size plaintext bytes: AES-CBC with
// PKCS#7 always adds 1–16 bytes (§6.4; a zero-byte file is one padding
// block here, open question §10.6).
func paddedSize(size int64) int64 { return (size/16 + 1) * 16 }

// encryptReader streams AES-256-CBC + PKCS#7 ciphertext of r through
// keybag's encrypting writer.
type encryptReader struct {
	r   io.Reader
	w   io.WriteCloser
	out bytes.Buffer
	buf []byte
	eof bool
}

func newEncryptReader(r io.Reader, key []byte) (io.Reader, error) {
	e := &encryptReader{r: r, buf: make([]byte, 32<<10)}
	w, err := keybag.NewEncryptWriter(&e.out, key)
	if err != nil {
		return nil, fmt.Errorf("backupagent: %w", err)
	}
	e.w = w
	return e, nil
}

func (e *encryptReader) Read(p []byte) (int, error) {
	for e.out.Len() == 0 {
		if e.eof {
			return 0, io.EOF
		}
		n, err := e.r.Read(e.buf)
		if n > 0 {
			if _, werr := e.w.Write(e.buf[:n]); werr != nil {
				return 0, werr
			}
		}
		if err == io.EOF {
			e.eof = true
			if cerr := e.w.Close(); cerr != nil {
				return 0, cerr
			}
		} else if err != nil {
			return 0, err
		}
	}
	return e.out.Read(p)
}

// decryptFile decrypts the ciphertext file src into dst and returns the
// plaintext length and SHA-1; bad padding or length means a damaged file or
// wrong key.
func decryptFile(src, dst string, key []byte) (int64, []byte, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, nil, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return 0, nil, err
	}
	dr, err := keybag.NewDecryptReader(in, key)
	if err != nil {
		out.Close()
		return 0, nil, err
	}
	h := sha1.New()
	n, err := io.Copy(io.MultiWriter(out, h), dr)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, h.Sum(nil), err
}

// unlockBackup opens the keybag of an encrypted backup's Manifest.plist
// with the restore password (§7.2 step 4): no keybag → 205, wrong password
// → 207. It also returns the KEK so the phone can adopt the keybag.
func unlockBackup(mf *backupfmt.Manifest, password string) (*cryptor, []byte, int64, string) {
	if len(mf.BackupKeyBag) == 0 {
		return nil, nil, 205, "No keybag in manifest"
	}
	kb, err := keybag.Parse(mf.BackupKeyBag)
	if err != nil {
		return nil, nil, 1, "Error decoding keybag"
	}
	if password == "" {
		return nil, nil, codePassword, "Invalid password"
	}
	kek, err := kb.DeriveKEK(password)
	if err != nil {
		return nil, nil, 1, "Error decoding keybag"
	}
	keys, err := kb.UnlockWithKEK(kek)
	if errors.Is(err, keybag.ErrWrongPassword) {
		return nil, nil, codePassword, "Invalid password"
	}
	if err != nil {
		return nil, nil, 1, "Error decoding keybag"
	}
	return &cryptor{kbBytes: mf.BackupKeyBag, kb: kb, keys: keys, manifest: len(mf.ManifestKey) > 0}, kek, 0, ""
}

// changePassword answers ChangePassword (§6.5): the passwords are
// top-level keys (idevicebackup2 sends them so); an Options dict is
// accepted too.
func (a *agent) changePassword(req map[string]any) error {
	if a.encEphemeral {
		// Nothing could keep a new password: answer like an agent without
		// the request rather than forget it after the session.
		return a.finish(1, "Unsupported request ChangePassword")
	}
	opts, _ := req["Options"].(map[string]any)
	get := func(k string) string {
		if s, ok := req[k].(string); ok {
			return s
		}
		s, _ := opts[k].(string)
		return s
	}
	var confirm func() bool
	if a.cfg.ConfirmPasscode != nil {
		confirm = func() bool { return a.cfg.ConfirmPasscode(a.ctx) }
	}
	code, desc := a.enc.change(get("OldPassword"), get("NewPassword"), confirm)
	return a.finish(code, desc)
}
