package lockdown_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/lockdownd"
	"github.com/ibackup/ibackup/lockdown"
	"github.com/ibackup/ibackup/lockdown/pairrecord"
)

func TestPairValidateUnpair(t *testing.T) {
	t.Run("mux", func(t *testing.T) { testPairValidateUnpair(t, startDevice(t, nil)) })
	t.Run("tcp", func(t *testing.T) { testPairValidateUnpair(t, startDeviceTCP(t, nil)) })
}

func testPairValidateUnpair(t *testing.T, d *device) {
	ctx := ctxT(t)
	c := d.client(t)

	typ, err := c.QueryType(ctx)
	require.NoError(t, err)
	assert.Equal(t, lockdown.TypeLockdown, typ)

	rec, err := c.Pair(ctx, d.store, testUDID)
	require.NoError(t, err)
	assert.Equal(t, d.srv.EscrowBag(), rec.EscrowBag, "EscrowBag from the Pair reply is stored")
	assert.Equal(t, "a4:c3:f0:11:22:33", rec.WiFiMACAddress)
	assert.Equal(t, []string{rec.HostID}, d.srv.PairedHosts())

	// The record file is usbmuxd's layout, mode 0600, and parses back.
	p := filepath.Join(d.store.Dir.Path, testUDID+".plist")
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	loaded, err := d.store.LoadPairRecord(ctx, testUDID)
	require.NoError(t, err)
	assert.Equal(t, rec, loaded)

	require.NoError(t, c.ValidatePair(ctx, rec))

	require.NoError(t, c.Unpair(ctx, d.store, testUDID))
	assert.Empty(t, d.srv.PairedHosts())
	_, err = os.Stat(p)
	assert.True(t, os.IsNotExist(err), "record deleted after Unpair")

	err = c.ValidatePair(ctx, rec)
	assert.ErrorIs(t, err, lockdown.ErrInvalidHostID)
	err = c.Unpair(ctx, d.store, testUDID)
	assert.ErrorIs(t, err, lockdown.ErrInvalidHostID, "no record: not paired")
}

func TestGeneratedCertificates(t *testing.T) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	pub := lockdown.EncodeDevicePublicKey(&testKeys(t)[0].PublicKey)
	rec, err := lockdown.GenerateRecord(pub, "BUID", now, keyGen(t))
	require.NoError(t, err)
	require.NoError(t, rec.Validate())
	parse := func(b []byte) *x509.Certificate {
		blk, _ := pem.Decode(b)
		require.NotNil(t, blk)
		c, err := x509.ParseCertificate(blk.Bytes)
		require.NoError(t, err)
		return c
	}
	root, host, dev := parse(rec.RootCertificate), parse(rec.HostCertificate), parse(rec.DeviceCertificate)
	assert.True(t, root.IsCA)
	assert.False(t, host.IsCA)
	assert.False(t, dev.IsCA)
	for _, c := range []*x509.Certificate{root, host, dev} {
		assert.Equal(t, x509.SHA256WithRSA, c.SignatureAlgorithm)
		assert.Empty(t, c.Subject.String())
		assert.True(t, c.NotBefore.Before(now), "validity starts in the past")
		assert.InDelta(t, 3650*24, c.NotAfter.Sub(c.NotBefore).Hours(), 1)
	}
	assert.NoError(t, host.CheckSignatureFrom(root))
	assert.NoError(t, dev.CheckSignatureFrom(root))
	assert.Equal(t, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment, dev.KeyUsage)
	assert.NotEmpty(t, dev.SubjectKeyId)
	assert.True(t, lockdown.CertificateMatchesKey(rec.DeviceCertificate, &testKeys(t)[0].PublicKey))
	blk, _ := pem.Decode(rec.HostPrivateKey)
	assert.Equal(t, "PRIVATE KEY", blk.Type, "PKCS#8 like libimobiledevice")
	assert.Len(t, rec.HostID, 36)
}

func TestPairDenied(t *testing.T) {
	d := startDevice(t, func(c *lockdownd.Config) { c.Trust.Mode = lockdownd.TrustDeny })
	ctx := ctxT(t)
	_, err := d.client(t).Pair(ctx, d.store, testUDID)
	require.Error(t, err)
	assert.ErrorIs(t, err, lockdown.ErrUserDeniedPairing)
	var le *lockdown.Error
	require.True(t, errors.As(err, &le))
	assert.Equal(t, "Pair", le.Request)
	assert.Contains(t, le.Hint(), "Trust")
	_, err = d.store.LoadPairRecord(ctx, testUDID)
	assert.ErrorIs(t, err, pairrecord.ErrNotFound, "nothing saved")
}

func TestPairDelayedAccept(t *testing.T) {
	d := startDevice(t, func(c *lockdownd.Config) { c.Trust.Delay = 5 * time.Second })
	ctx := ctxT(t)
	_, err := d.client(t).Pair(ctx, d.store, testUDID)
	require.NoError(t, err)
	assert.Equal(t, 5, d.clock.sleeps, "polled once a second while the dialog was up")
	assert.Len(t, d.srv.PairedHosts(), 1)
}

func TestPairTimeout(t *testing.T) {
	d := startDevice(t, func(c *lockdownd.Config) { c.Trust.Mode = lockdownd.TrustNever })
	ctx := ctxT(t)
	o := d.opts(t)
	o.PairTimeout = 10 * time.Second
	conn, err := d.dial.Dial(ctx, lockdown.Port)
	require.NoError(t, err)
	c := lockdown.NewClient(conn, o)
	defer c.Close()
	_, err = c.Pair(ctx, d.store, testUDID)
	assert.ErrorIs(t, err, lockdown.ErrPairingTimeout)
	assert.Contains(t, err.Error(), "Trust")
}

func TestPairLocked(t *testing.T) {
	d := startDevice(t, func(c *lockdownd.Config) { c.Locked = true })
	ctx := ctxT(t)
	c := d.client(t)
	v, err := c.GetValue(ctx, "", "PasswordProtected")
	require.NoError(t, err)
	assert.Equal(t, true, v)
	_, err = c.Pair(ctx, d.store, testUDID)
	assert.ErrorIs(t, err, lockdown.ErrPasswordProtected)
	var le *lockdown.Error
	require.ErrorAs(t, err, &le)
	assert.Contains(t, le.Hint(), "unlock")

	d.srv.SetLocked(false)
	_, err = c.Pair(ctx, d.store, testUDID)
	assert.NoError(t, err)
}
