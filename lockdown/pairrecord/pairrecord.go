// Package pairrecord reads and writes lockdown pair records: the keys and
// certificates a host and a phone exchanged when the user tapped "Trust".
//
// Records are stored the way usbmuxd stores them (usb-usbmux-lockdown.md §4):
// one XML plist per device, <UDID>.plist, plus SystemConfiguration.plist
// holding the host's SystemBUID, in a directory that defaults to
// /var/lib/lockdown on Linux. Files written here are replaced atomically and
// have mode 0600, because they hold private keys.
package pairrecord

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// DefaultDir is where usbmuxd keeps pair records on Linux.
const DefaultDir = "/var/lib/lockdown"

// ErrNotFound reports that no record exists for a device.
var ErrNotFound = errors.New("pairrecord: no pair record")

// Record is a pair record. Field names are the plist keys (§4.2).
// EscrowBag, WiFiMACAddress and UDID are optional; readers must not
// require them.
type Record struct {
	DeviceCertificate []byte `plist:"DeviceCertificate"`
	HostCertificate   []byte `plist:"HostCertificate"`
	HostPrivateKey    []byte `plist:"HostPrivateKey"`
	RootCertificate   []byte `plist:"RootCertificate"`
	RootPrivateKey    []byte `plist:"RootPrivateKey"`
	HostID            string `plist:"HostID"`
	SystemBUID        string `plist:"SystemBUID"`
	EscrowBag         []byte `plist:"EscrowBag,omitempty"`
	WiFiMACAddress    string `plist:"WiFiMACAddress,omitempty"`
	UDID              string `plist:"UDID,omitempty"`
}

// Parse decodes a record from an XML or binary plist and checks that the
// fields every TLS session needs are present.
func Parse(data []byte) (*Record, error) {
	var r Record
	if err := plistconn.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("pairrecord: %w", err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Validate reports the first required field that is missing.
func (r *Record) Validate() error {
	switch {
	case r.HostID == "":
		return errors.New("pairrecord: record has no HostID")
	case len(r.HostCertificate) == 0:
		return errors.New("pairrecord: record has no HostCertificate")
	case len(r.HostPrivateKey) == 0:
		return errors.New("pairrecord: record has no HostPrivateKey")
	case len(r.RootCertificate) == 0:
		return errors.New("pairrecord: record has no RootCertificate")
	case len(r.DeviceCertificate) == 0:
		return errors.New("pairrecord: record has no DeviceCertificate")
	}
	return nil
}

// Marshal encodes the record as an XML plist, as usbmuxd writes it.
func (r *Record) Marshal() ([]byte, error) {
	return plistconn.Marshal(r, plistconn.XML)
}

// Dir is a directory of pair records in usbmuxd's layout.
type Dir struct {
	Path string
}

// CheckUDID rejects UDIDs that could not be a file name in a record
// directory (path separators, "..", empty). It guards every path built from
// a UDID a client or device supplied.
func CheckUDID(udid string) error {
	if udid == "" || len(udid) > 128 || strings.ContainsAny(udid, `/\`+"\x00") || udid == "." || udid == ".." || strings.HasPrefix(udid, ".") {
		return fmt.Errorf("pairrecord: invalid UDID %q", udid)
	}
	return nil
}

func (d Dir) file(udid string) (string, error) {
	if err := CheckUDID(udid); err != nil {
		return "", err
	}
	return filepath.Join(d.Path, udid+".plist"), nil
}

// LoadRaw returns the stored bytes of a device's record.
func (d Dir) LoadRaw(udid string) ([]byte, error) {
	p, err := d.file(udid)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w for %s in %s", ErrNotFound, udid, d.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("pairrecord: %w", err)
	}
	return b, nil
}

// Load reads and parses a device's record.
func (d Dir) Load(udid string) (*Record, error) {
	b, err := d.LoadRaw(udid)
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// Save stores a record atomically with mode 0600.
func (d Dir) Save(udid string, r *Record) error {
	b, err := r.Marshal()
	if err != nil {
		return err
	}
	return d.saveBytes(udid, b)
}

// SaveRaw stores a record received as plist bytes (XML or binary),
// re-encoded as XML like usbmuxd does. Unknown keys are kept.
func (d Dir) SaveRaw(udid string, data []byte) error {
	var v map[string]any
	if err := plistconn.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("pairrecord: %w", err)
	}
	b, err := plistconn.Marshal(v, plistconn.XML)
	if err != nil {
		return err
	}
	return d.saveBytes(udid, b)
}

func (d Dir) saveBytes(udid string, b []byte) error {
	p, err := d.file(udid)
	if err != nil {
		return err
	}
	return WriteFileAtomic(p, b, 0o600)
}

// Delete removes a device's record. A missing record is ErrNotFound.
func (d Dir) Delete(udid string) error {
	p, err := d.file(udid)
	if err != nil {
		return err
	}
	err = os.Remove(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w for %s in %s", ErrNotFound, udid, d.Path)
	}
	if err != nil {
		return fmt.Errorf("pairrecord: %w", err)
	}
	return nil
}

// List returns the UDIDs that have records.
func (d Dir) List() ([]string, error) {
	ents, err := os.ReadDir(d.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pairrecord: %w", err)
	}
	var out []string
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".plist")
		if !ok || e.IsDir() || name == "SystemConfiguration" || CheckUDID(name) != nil {
			continue
		}
		out = append(out, name)
	}
	return out, nil
}

type systemConfig struct {
	SystemBUID string `plist:"SystemBUID"`
}

// SystemBUID returns the host's SystemBUID from SystemConfiguration.plist,
// creating the file with a new random BUID if there is none.
func (d Dir) SystemBUID() (string, error) {
	p := filepath.Join(d.Path, "SystemConfiguration.plist")
	if b, err := os.ReadFile(p); err == nil {
		var sc systemConfig
		if err := plistconn.Unmarshal(b, &sc); err == nil && sc.SystemBUID != "" {
			return sc.SystemBUID, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("pairrecord: %w", err)
	}
	buid := NewUUID()
	b, err := plistconn.Marshal(systemConfig{SystemBUID: buid}, plistconn.XML)
	if err != nil {
		return "", err
	}
	if err := WriteFileAtomic(p, b, 0o600); err != nil {
		return "", err
	}
	return buid, nil
}

// NewUUID returns a random version-4 UUID in the uppercase form lockdown
// uses for HostID and SystemBUID.
func NewUUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:]) // crypto/rand.Read never fails on supported platforms
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// WriteFileAtomic writes data to a temporary file in the same directory,
// syncs it and renames it over path, creating the directory (mode 0700) if
// needed. Readers never see a partial file.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pairrecord: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("pairrecord: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("pairrecord: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("pairrecord: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("pairrecord: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pairrecord: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pairrecord: %w", err)
	}
	ok = true
	return nil
}
