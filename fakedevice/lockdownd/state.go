package lockdownd

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/ibackup/ibackup/lockdown"
	"github.com/ibackup/ibackup/lockdown/pairrecord"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// hostRecord is what the device keeps per paired host (§7.2).
type hostRecord struct {
	HostCertificate   []byte `plist:"HostCertificate"`
	RootCertificate   []byte `plist:"RootCertificate"`
	DeviceCertificate []byte `plist:"DeviceCertificate"`
	SystemBUID        string `plist:"SystemBUID"`
	HostName          string `plist:"HostName,omitempty"`
}

// state is the plist at Config.StatePath. It holds the device private key,
// so it is written with mode 0600 and never logged.
type state struct {
	DevicePrivateKey []byte                `plist:"DevicePrivateKey"` // PEM PKCS#1
	EscrowBag        []byte                `plist:"EscrowBag"`
	PairedHosts      map[string]hostRecord `plist:"PairedHosts"`
}

// escrowBagSize is the size of the synthetic escrow bag. Real bags are
// opaque keybag blobs the host only stores and returns (§4.2).
const escrowBagSize = 64

// loadState reads path ("" = fresh in-memory state) and fills in a device
// key and escrow bag when missing, saving the result.
func loadState(path string, key *rsa.PrivateKey) (*state, *rsa.PrivateKey, error) {
	st := &state{}
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			if err := plistconn.Unmarshal(b, st); err != nil {
				return nil, nil, fmt.Errorf("lockdownd: state %s: %w", path, err)
			}
		case errors.Is(err, fs.ErrNotExist):
		default:
			return nil, nil, fmt.Errorf("lockdownd: %w", err)
		}
	}
	if st.PairedHosts == nil {
		st.PairedHosts = map[string]hostRecord{}
	}
	// First start of this phone: make its RSA-2048 identity (§7.2) and an
	// escrow bag, and persist them so the pairing survives restarts and
	// hosts' records stay valid.
	dirty := false
	if len(st.DevicePrivateKey) == 0 {
		if key == nil {
			k, err := lockdown.GenerateKey()
			if err != nil {
				return nil, nil, fmt.Errorf("lockdownd: %w", err)
			}
			key = k
		}
		st.DevicePrivateKey = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
		dirty = true
	}
	signer, err := lockdown.ParsePrivateKey(st.DevicePrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("lockdownd: state device key: %w", err)
	}
	devKey, ok := signer.(*rsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("lockdownd: state device key is not RSA")
	}
	if len(st.EscrowBag) == 0 {
		st.EscrowBag = make([]byte, escrowBagSize)
		_, _ = rand.Read(st.EscrowBag)
		dirty = true
	}
	if dirty {
		if err := st.save(path); err != nil {
			return nil, nil, err
		}
	}
	return st, devKey, nil
}

// save writes the state atomically with mode 0600 (no-op in memory).
func (st *state) save(path string) error {
	if path == "" {
		return nil
	}
	b, err := plistconn.Marshal(st, plistconn.XML)
	if err != nil {
		return fmt.Errorf("lockdownd: %w", err)
	}
	if err := pairrecord.WriteFileAtomic(path, b, 0o600); err != nil {
		return fmt.Errorf("lockdownd: saving state: %w", err)
	}
	return nil
}
