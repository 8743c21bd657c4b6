package lockdown

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/ibackup/ibackup/lockdown/pairrecord"
)

// KeyGenerator makes the RSA keys for a new pair record.
type KeyGenerator func() (*rsa.PrivateKey, error)

// GenerateKey makes an RSA 2048-bit key with e = 65537, as every pairing
// implementation does (usb-usbmux-lockdown.md §6.2).
func GenerateKey() (*rsa.PrivateKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("lockdown: generating RSA key: %w", err)
	}
	return k, nil
}

// certValidity is 10 × 365 days, as libimobiledevice (§6.2).
const certValidity = 3650 * 24 * time.Hour

// certBackdate starts validity in the past to absorb clock differences
// between host and device (§6.4, pitfall 20).
const certBackdate = 5 * time.Minute

// ParseDevicePublicKey decodes GetValue DevicePublicKey: PEM "RSA PUBLIC
// KEY" (PKCS#1), with SPKI "PUBLIC KEY" accepted as a fallback (§6.1).
func ParseDevicePublicKey(b []byte) (*rsa.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("lockdown: DevicePublicKey is not PEM")
	}
	if k, err := x509.ParsePKCS1PublicKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("lockdown: DevicePublicKey: %w", err)
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("lockdown: DevicePublicKey is not an RSA key")
	}
	return rk, nil
}

// EncodeDevicePublicKey is the inverse of ParseDevicePublicKey: PEM
// "RSA PUBLIC KEY" bytes as a device reports them.
func EncodeDevicePublicKey(k *rsa.PublicKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(k)})
}

// ParsePrivateKey decodes a PEM private key in PKCS#8 ("PRIVATE KEY") or
// PKCS#1 ("RSA PRIVATE KEY") form; pair records in the wild use both (§4.2).
// Errors never include key bytes.
func ParsePrivateKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("lockdown: private key is not PEM")
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, errors.New("lockdown: private key is neither PKCS#1 nor PKCS#8")
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("lockdown: private key type cannot sign")
	}
	return s, nil
}

// certDER returns the DER of the first certificate in a PEM blob.
func certDER(b []byte) ([]byte, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("lockdown: not a PEM certificate")
	}
	return blk.Bytes, nil
}

// GenerateRecord builds a new pair record for a device with the given
// DevicePublicKey (PEM) following §6.4: fresh RSA-2048 root and host keys,
// a self-signed root (basicConstraints critical CA:TRUE), a host and a
// device certificate signed by the root (CA:FALSE, keyUsage critical
// digitalSignature|keyEncipherment; the device certificate with an explicit
// SubjectKeyId), serial 1, empty subject and issuer, SHA-256, valid for 10
// years starting a few minutes before now. Private keys are PKCS#8 PEM.
// HostID is a new uppercase UUID; SystemBUID is the host's.
func GenerateRecord(devicePublicKey []byte, systemBUID string, now time.Time, gen KeyGenerator) (*pairrecord.Record, error) {
	if gen == nil {
		gen = GenerateKey
	}
	devKey, err := ParseDevicePublicKey(devicePublicKey)
	if err != nil {
		return nil, err
	}
	rootKey, err := gen()
	if err != nil {
		return nil, err
	}
	hostKey, err := gen()
	if err != nil {
		return nil, err
	}
	notBefore := now.Add(-certBackdate).UTC()
	base := x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(certValidity),
		SignatureAlgorithm:    x509.SHA256WithRSA,
		BasicConstraintsValid: true,
	}
	rootTmpl := base
	rootTmpl.IsCA = true
	rootTmpl.SubjectKeyId = keyID(&rootKey.PublicKey)
	rootDER, err := x509.CreateCertificate(rand.Reader, &rootTmpl, &rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("lockdown: root certificate: %w", err)
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, fmt.Errorf("lockdown: root certificate: %w", err)
	}
	leaf := base
	leaf.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	hostDER, err := x509.CreateCertificate(rand.Reader, &leaf, root, &hostKey.PublicKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("lockdown: host certificate: %w", err)
	}
	devTmpl := leaf
	devTmpl.SubjectKeyId = keyID(devKey)
	devDER, err := x509.CreateCertificate(rand.Reader, &devTmpl, root, devKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("lockdown: device certificate: %w", err)
	}
	rootPEM, err := pkcs8PEM(rootKey)
	if err != nil {
		return nil, err
	}
	hostPEM, err := pkcs8PEM(hostKey)
	if err != nil {
		return nil, err
	}
	return &pairrecord.Record{
		DeviceCertificate: certPEM(devDER),
		HostCertificate:   certPEM(hostDER),
		HostPrivateKey:    hostPEM,
		RootCertificate:   certPEM(rootDER),
		RootPrivateKey:    rootPEM,
		HostID:            pairrecord.NewUUID(),
		SystemBUID:        systemBUID,
	}, nil
}

// keyID is the SHA-1 of the subjectPublicKey bit string, the "hash" method
// of RFC 5280 §4.2.1.2 that libimobiledevice uses (§6.2).
func keyID(pub *rsa.PublicKey) []byte {
	h := sha1.Sum(x509.MarshalPKCS1PublicKey(pub)) // the BIT STRING content is the PKCS#1 key
	return h[:]
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func pkcs8PEM(k *rsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("lockdown: encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// CertificateMatchesKey reports whether the PEM certificate certifies pub;
// the fake lockdownd uses it to check the DeviceCertificate in Pair.
func CertificateMatchesKey(certPEMBytes []byte, pub *rsa.PublicKey) bool {
	der, err := certDER(certPEMBytes)
	if err != nil {
		return false
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return false
	}
	k, ok := cert.PublicKey.(*rsa.PublicKey)
	return ok && k.Equal(pub)
}
