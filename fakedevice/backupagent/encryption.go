package backupagent

// The phone's backup-encryption setting (mobilebackup2-and-backup-format.md
// §6, §6.5). A real phone keeps the backup password in its keychain and
// encrypts backups itself; the host only needs the password to read or
// restore them. The simulator keeps the password, the backup keybag and the
// key-encryption key in one plist file under the phone directory so the
// slow KDF runs once per password change, not once per backup.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"

	"howett.net/plist"

	"github.com/ibackup/ibackup/lockdown/pairrecord"
	"github.com/ibackup/ibackup/mobilebackup2/keybag"
)

// EncryptionFile is the conventional name of the encryption state file in a
// simulated phone's directory (<phone>/backup-encryption.plist).
const EncryptionFile = "backup-encryption.plist"

// EncryptionConfig configures NewEncryption.
type EncryptionConfig struct {
	// Path is the state file (binary plist, mode 0600) holding the
	// password (in clear: a simulated phone), the keybag and its
	// key-encryption key. It is owned by this package; "" keeps the state
	// in memory. When the file exists it wins
	// over Password.
	Path string
	// Password is the initial backup password when Path holds no state
	// ("" = encryption off).
	Password string
	// Iter and DPIC are the PBKDF2 rounds of new keybags (0 = the device
	// defaults 10 000 and 10 000 000, §6.1); tests use small counts.
	Iter, DPIC uint32
	// NoDP makes keybags without the iOS 10.2 PBKDF2-SHA256 stage (profiles
	// older than iOS 10.2; see EncryptsManifest).
	NoDP bool
	// OnChange, when set, is called after a successful ChangePassword, and
	// after a restored encrypted backup gave the phone its password, with
	// the new state (e.g. to update lockdownd's com.apple.mobile.backup
	// WillEncrypt value and the phone's device.plist). It runs on the
	// backup session's goroutine without locks held.
	OnChange func(willEncrypt bool, password string)
}

// encState is the content of the state file.
type encState struct {
	Password string `plist:"Password"`
	Keybag   []byte `plist:"Keybag,omitempty"`
	KEK      []byte `plist:"KEK,omitempty"`
}

// Encryption is one phone's backup-encryption setting, shared by every
// session of the phone. Safe for concurrent use.
type Encryption struct {
	cfg EncryptionConfig

	mu   sync.Mutex // guards everything below
	st   encState
	kb   *keybag.Keybag
	keys *keybag.ClassKeys
}

// NewEncryption loads the state file, or starts from cfg.Password when
// there is none. The keybag is derived on first use (the KDF is slow with
// device-default rounds) and then stored.
func NewEncryption(cfg EncryptionConfig) (*Encryption, error) {
	e := &Encryption{cfg: cfg, st: encState{Password: cfg.Password}}
	if cfg.Path == "" {
		return e, nil
	}
	b, err := os.ReadFile(cfg.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return e, nil
	}
	if err != nil {
		return nil, fmt.Errorf("backupagent: %w", err)
	}
	var st encState
	if _, err := plist.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("backupagent: %s: %w", cfg.Path, err)
	}
	e.st = st
	if st.Password == "" {
		return e, nil
	}
	if kb, err := keybag.Parse(st.Keybag); err == nil && len(st.KEK) == 32 {
		if keys, err := kb.UnlockWithKEK(st.KEK); err == nil {
			e.kb, e.keys = kb, keys
		}
	}
	return e, nil
}

// newKeybag makes a fresh backup keybag for password (the caller holds mu
// or owns e exclusively). Like a real phone after a password change, the
// class keys are new: the next backup is a full one (§6.5).
func (e *Encryption) newKeybag(password string) error {
	kb, keys, err := keybag.New(password, keybag.NewOptions{Iter: e.cfg.Iter, DPIC: e.cfg.DPIC, NoDP: e.cfg.NoDP})
	if err != nil {
		return fmt.Errorf("backupagent: %w", err)
	}
	kek, err := kb.DeriveKEK(password)
	if err != nil {
		return fmt.Errorf("backupagent: %w", err)
	}
	e.st = encState{Password: password, Keybag: kb.Marshal(), KEK: kek}
	e.kb, e.keys = kb, keys
	return nil
}

// save writes the state file (the caller holds mu or owns e).
func (e *Encryption) save() error {
	if e.cfg.Path == "" {
		return nil
	}
	b, err := plist.Marshal(&e.st, plist.BinaryFormat)
	if err != nil {
		return fmt.Errorf("backupagent: %w", err)
	}
	if err := pairrecord.WriteFileAtomic(e.cfg.Path, b, 0o600); err != nil {
		return fmt.Errorf("backupagent: %w", err)
	}
	return nil
}

// WillEncrypt reports whether the phone encrypts its backups (lockdown
// com.apple.mobile.backup WillEncrypt, §6.5).
func (e *Encryption) WillEncrypt() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.st.Password != ""
}

// Password returns the current backup password ("" when off).
func (e *Encryption) Password() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.st.Password
}

// current returns the keybag bytes, parsed keybag and class keys a backup
// uses, deriving and storing them on first use; nils when encryption is off.
func (e *Encryption) current() ([]byte, *keybag.Keybag, *keybag.ClassKeys, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.st.Password == "" {
		return nil, nil, nil, nil
	}
	if e.keys == nil {
		if err := e.newKeybag(e.st.Password); err != nil {
			return nil, nil, nil, err
		}
		if err := e.save(); err != nil {
			return nil, nil, nil, err
		}
	}
	return e.st.Keybag, e.kb, e.keys, nil
}

// Change Password results (MBErrorDomain, §2.5, §6.5).
const (
	codePassword = 207
	codeLocked   = 208
)

// change applies ChangePassword (§6.5): enable = only newPW, disable = only
// oldPW, change = both. It returns an MBError code and description (0 on
// success). confirm, when set, is asked before anything changes (the
// passcode prompt of iOS 13+).
func (e *Encryption) change(oldPW, newPW string, confirm func() bool) (int64, string) {
	e.mu.Lock()
	cur := e.st.Password
	var code int64
	var desc string
	switch {
	case oldPW == "" && newPW == "":
		code, desc = 1, "No password given"
	case oldPW == "" && cur != "":
		code, desc = codePassword, "Backup encryption is already enabled"
	case oldPW != "" && cur == "":
		code, desc = codePassword, "Backup encryption is not enabled"
	case oldPW != "" && oldPW != cur:
		code, desc = codePassword, "Invalid password" // pymobiledevice3 #721
	}
	e.mu.Unlock()
	if code != 0 {
		return code, desc
	}
	if confirm != nil && !confirm() {
		return codeLocked, "Passcode was not entered on the device"
	}
	e.mu.Lock()
	prev := e.st
	prevKB, prevKeys := e.kb, e.keys
	var err error
	if newPW == "" {
		e.st, e.kb, e.keys = encState{}, nil, nil
	} else {
		err = e.newKeybag(newPW)
	}
	if err == nil {
		err = e.save()
	}
	if err != nil {
		e.st, e.kb, e.keys = prev, prevKB, prevKeys
		e.mu.Unlock()
		return 1, "Failed to change the backup password: " + err.Error()
	}
	e.mu.Unlock()
	if e.cfg.OnChange != nil {
		e.cfg.OnChange(newPW != "", newPW)
	}
	return 0, ""
}

// adopt turns encryption on with the keybag of an encrypted backup that
// was restored (its KEK already derived from password): the restored
// keychain holds that backup password [I]. No KDF runs again.
func (e *Encryption) adopt(password string, kbBytes, kek []byte, kb *keybag.Keybag, keys *keybag.ClassKeys) error {
	e.mu.Lock()
	prev, prevKB, prevKeys := e.st, e.kb, e.keys
	e.st = encState{Password: password, Keybag: kbBytes, KEK: kek}
	e.kb, e.keys = kb, keys
	err := e.save()
	if err != nil {
		e.st, e.kb, e.keys = prev, prevKB, prevKeys
	}
	e.mu.Unlock()
	if err == nil && prev.Password != password && e.cfg.OnChange != nil {
		e.cfg.OnChange(true, password)
	}
	return err
}

// EncryptsManifest reports whether a phone of productVersion encrypts
// Manifest.db and uses the two-stage KDF (iOS 10.2 and later, §6.1–§6.3).
// An unknown version counts as modern.
func EncryptsManifest(productVersion string) bool {
	if productVersion == "" {
		return true
	}
	parts := strings.Split(productVersion, ".")
	major, _ := strconv.Atoi(parts[0])
	minor := 0
	if len(parts) > 1 {
		minor, _ = strconv.Atoi(parts[1])
	}
	return major > 10 || (major == 10 && minor >= 2)
}
