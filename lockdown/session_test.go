package lockdown_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/lockdownd"
	"github.com/ibackup/ibackup/lockdown"
	"github.com/ibackup/ibackup/lockdown/pairrecord"
)

// paired returns a device with a stored pair record and that record.
func paired(t *testing.T, mod func(*lockdownd.Config)) (*device, *pairrecord.Record) {
	t.Helper()
	d := startDevice(t, mod)
	rec, err := d.client(t).Pair(ctxT(t), d.store, testUDID)
	require.NoError(t, err)
	return d, rec
}

func TestSessionAllValues(t *testing.T) {
	d, rec := paired(t, nil)
	ctx := ctxT(t)
	c := d.client(t)
	require.NoError(t, c.StartSession(ctx, rec))
	st, ok := c.TLSState()
	require.True(t, ok, "session runs inside TLS")
	assert.Equal(t, uint16(tls.VersionTLS13), st.Version)

	all, err := c.GetValue(ctx, "", "")
	require.NoError(t, err)
	m, ok := all.(map[string]any)
	require.True(t, ok)
	want := lockdownd.ExampleValues(testUDID)
	for k, v := range want {
		if k == "TrustedHostAttached" {
			continue
		}
		assert.Equal(t, v, m[k], "whole-domain value %s", k)
		got, err := c.GetValue(ctx, "", k)
		if assert.NoError(t, err, k) {
			assert.Equal(t, v, got, "GetValue %s", k)
		}
	}
	assert.Equal(t, d.srv.DevicePublicKey(), m["DevicePublicKey"])
	assert.Equal(t, false, m["PasswordProtected"])

	v, err := c.GetValue(ctx, "com.apple.mobile.backup", "WillEncrypt")
	require.NoError(t, err)
	assert.Equal(t, false, v)
	_, err = c.GetValue(ctx, "", "NoSuchKey")
	assert.ErrorIs(t, err, lockdown.ErrMissingValue)

	require.NoError(t, c.SetValue(ctx, "com.apple.mobile.backup", "WillEncrypt", true))
	v, err = c.GetValue(ctx, "com.apple.mobile.backup", "WillEncrypt")
	require.NoError(t, err)
	assert.Equal(t, true, v)
	require.NoError(t, c.RemoveValue(ctx, "com.apple.mobile.backup", "WillEncrypt"))
	_, err = c.GetValue(ctx, "com.apple.mobile.backup", "WillEncrypt")
	assert.ErrorIs(t, err, lockdown.ErrMissingValue)
	assert.ErrorIs(t, c.SetValue(ctx, "", "UniqueDeviceID", "x"), lockdown.ErrSetProhibited)

	err = c.StartSession(ctx, rec)
	assert.ErrorIs(t, err, lockdown.ErrSessionActive)
}

func TestStopSessionContinuesPlaintext(t *testing.T) {
	d, rec := paired(t, nil)
	ctx := ctxT(t)
	c := d.client(t)
	for range 2 { // StopSession → plaintext → StartSession → TLS again (§5.5)
		require.NoError(t, c.StartSession(ctx, rec))
		_, err := c.GetValue(ctx, "", "SerialNumber")
		require.NoError(t, err)
		require.NoError(t, c.StopSession(ctx))
		assert.False(t, c.InSession())
		v, err := c.GetValue(ctx, "", "ProductVersion")
		require.NoError(t, err, "plaintext right after close_notify (pitfall 23)")
		assert.Equal(t, "17.5.1", v)
		_, err = c.GetValue(ctx, "", "BasebandVersion")
		assert.ErrorIs(t, err, lockdown.ErrGetProhibited, "session values gone")
	}
	assert.ErrorIs(t, c.StopSession(ctx), lockdown.ErrNoSession)
	require.NoError(t, c.Goodbye(ctx))
}

func TestWrongDeviceCertRefused(t *testing.T) {
	d, rec := paired(t, func(c *lockdownd.Config) { c.WrongCert = true })
	ctx := ctxT(t)
	c := d.client(t)
	err := c.StartSession(ctx, rec)
	require.ErrorIs(t, err, lockdown.ErrDeviceCertMismatch)
	assert.Contains(t, err.Error(), "does not match the DeviceCertificate in the pair record")
	assert.False(t, c.InSession())
}

func TestInvalidHostIDAfterTrustReset(t *testing.T) {
	d, rec := paired(t, nil)
	ctx := ctxT(t)
	c := d.client(t)
	require.NoError(t, c.Unpair(ctx, d.store, testUDID))
	err := c.StartSession(ctx, rec)
	require.ErrorIs(t, err, lockdown.ErrInvalidHostID)
	var le *lockdown.Error
	require.ErrorAs(t, err, &le)
	assert.Contains(t, le.Hint(), "pair again")
}

func TestRootCertificateAsClientCert(t *testing.T) {
	// libimobiledevice presents RootCertificate, pymobiledevice3 the host
	// certificate; the fake accepts both (§5.5) but nothing else [I].
	for _, tc := range []struct {
		name    string
		anyCert bool
		mutate  func(r *pairrecord.Record, other *pairrecord.Record)
		ok      bool
	}{
		{"root", false, func(r, _ *pairrecord.Record) {
			r.HostCertificate, r.HostPrivateKey = r.RootCertificate, r.RootPrivateKey
		}, true},
		{"foreign", false, func(r, o *pairrecord.Record) {
			r.HostCertificate, r.HostPrivateKey = o.HostCertificate, o.HostPrivateKey
		}, false},
		{"foreign-accepted", true, func(r, o *pairrecord.Record) {
			r.HostCertificate, r.HostPrivateKey = o.HostCertificate, o.HostPrivateKey
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, rec := paired(t, func(c *lockdownd.Config) { c.AcceptAnyClientCert = tc.anyCert })
			// A different time makes different certificates from the shared test keys.
			other, err := lockdown.GenerateRecord(d.srv.DevicePublicKey(), "X", d.clock.Now().Add(time.Hour), keyGen(t))
			require.NoError(t, err)
			r := *rec
			tc.mutate(&r, other)
			c := d.client(t)
			err = c.StartSession(ctxT(t), &r)
			if tc.ok {
				require.NoError(t, err)
				_, err = c.GetValue(ctxT(t), "", "SerialNumber")
				assert.NoError(t, err)
			} else if err == nil {
				// TLS 1.3: the server checks the client certificate after
				// the client's handshake finished; the next read fails.
				_, err = c.GetValue(ctxT(t), "", "SerialNumber")
				assert.Error(t, err)
			}
		})
	}
}

func TestLegacyTLS(t *testing.T) {
	// An old device (LegacyTLS [I]) only speaks TLS 1.0 with RSA key
	// exchange; the client still gets a session.
	d, rec := paired(t, func(c *lockdownd.Config) {
		c.LegacyTLS = true
		c.Values["ProductVersion"] = "9.3.5"
	})
	ctx := ctxT(t)
	c := d.client(t)
	require.NoError(t, c.StartSession(ctx, rec))
	st, ok := c.TLSState()
	require.True(t, ok)
	assert.Equal(t, uint16(tls.VersionTLS10), st.Version)
	assert.Equal(t, tls.TLS_RSA_WITH_AES_128_CBC_SHA, st.CipherSuite)
	require.NoError(t, c.StopSession(ctx))
	_, err := c.GetValue(ctx, "", "ProductVersion")
	assert.NoError(t, err)
}

func TestUnpairedValues(t *testing.T) {
	for _, open := range []bool{false, true} {
		d := startDevice(t, func(c *lockdownd.Config) { c.OpenValues = open })
		ctx := ctxT(t)
		c := d.client(t)
		all, err := c.GetValue(ctx, "", "")
		require.NoError(t, err)
		m := all.(map[string]any)
		for _, k := range []string{"DevicePublicKey", "UniqueDeviceID", "ProductVersion", "DeviceClass", "WiFiAddress", "DeviceName", "BuildVersion", "ProductType"} {
			assert.Contains(t, m, k)
		}
		_, err = c.GetValue(ctx, "", "BasebandVersion")
		_, hasBaseband := m["BasebandVersion"]
		v, err2 := c.GetValue(ctx, "com.apple.mobile.iTunes", "MinITunesVersion")
		assert.NoError(t, err2, "readable unpaired (§5.7)")
		assert.Equal(t, "12.0", v)
		_, err3 := c.GetValue(ctx, "com.apple.mobile.backup", "WillEncrypt")
		if open {
			assert.NoError(t, err)
			assert.True(t, hasBaseband)
			assert.NoError(t, err3)
		} else {
			assert.ErrorIs(t, err, lockdown.ErrGetProhibited)
			assert.False(t, hasBaseband)
			assert.ErrorIs(t, err3, lockdown.ErrGetProhibited)
		}
	}
}

func TestStartService(t *testing.T) {
	d, rec := paired(t, nil)
	ctx := ctxT(t)
	c := d.client(t)
	_, err := c.StartService(ctx, d.dial, "com.apple.afc", false)
	assert.ErrorIs(t, err, lockdown.ErrNoSession)
	require.NoError(t, c.StartSession(ctx, rec))

	for _, tc := range []struct {
		name   string
		escrow bool
		tls    bool
	}{{"com.apple.mobilebackup2", true, true}, {"com.apple.afc", false, false}} {
		conn, err := c.StartService(ctx, d.dial, tc.name, tc.escrow)
		require.NoError(t, err, tc.name)
		_, isTLS := conn.(*tls.Conn)
		assert.Equal(t, tc.tls, isTLS, "EnableServiceSSL honoured for %s", tc.name)
		_, err = conn.Write([]byte("ping " + tc.name))
		require.NoError(t, err)
		buf := make([]byte, len("ping "+tc.name))
		_, err = io.ReadFull(conn, buf)
		require.NoError(t, err)
		assert.Equal(t, "ping "+tc.name, string(buf))
		// The echo service closes as soon as it reads close_notify; the
		// mux may then report the reset from Close, which is harmless.
		_ = conn.Close()
	}

	_, err = c.StartService(ctx, d.dial, "com.apple.nope", false)
	assert.ErrorIs(t, err, lockdown.ErrInvalidService)

	noBag := *rec
	noBag.EscrowBag = nil
	c2 := d.client(t)
	require.NoError(t, c2.StartSession(ctx, &noBag))
	_, err = c2.StartService(ctx, d.dial, "com.apple.mobilebackup2", true)
	assert.ErrorIs(t, err, lockdown.ErrNoEscrowBag)
}

func TestStartServiceFaults(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mod    func(*lockdownd.Config)
		escrow bool
		want   error
	}{
		{"not-unlocked-since-boot", func(c *lockdownd.Config) { c.NotUnlockedSinceBoot = true }, true, lockdown.ErrMissingValue},
		{"locked-without-bag", func(c *lockdownd.Config) { c.Locked = true }, false, lockdown.ErrPasswordProtected},
		{"forced-error", func(c *lockdownd.Config) {
			c.ServiceErrors = map[string]string{"com.apple.mobilebackup2": "ServiceLimit"}
		}, true, &lockdown.Error{Code: "ServiceLimit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDevice(t, tc.mod)
			ctx := ctxT(t)
			d.srv.SetLocked(false)
			rec, err := d.client(t).Pair(ctx, d.store, testUDID)
			require.NoError(t, err)
			if tc.name == "locked-without-bag" {
				d.srv.SetLocked(true)
			}
			c := d.client(t)
			require.NoError(t, c.StartSession(ctx, rec))
			_, err = c.StartService(ctx, d.dial, "com.apple.mobilebackup2", tc.escrow)
			assert.ErrorIs(t, err, tc.want)
		})
	}
}

func TestConnect(t *testing.T) {
	d := startDevice(t, nil)
	ctx := ctxT(t)
	opts := &lockdown.ConnectOptions{Client: *d.opts(t), Pair: lockdown.PairNever}
	_, err := lockdown.Connect(ctx, d.dial, testUDID, d.store, opts)
	assert.ErrorIs(t, err, lockdown.ErrInvalidHostID, "PairNever without a record")

	opts.Pair = lockdown.PairIfNeeded
	c, err := lockdown.Connect(ctx, d.dial, testUDID, d.store, opts)
	require.NoError(t, err)
	assert.True(t, c.InSession())
	assert.Equal(t, "17.5.1", c.ProductVersion())
	conn, err := c.StartService(ctx, d.dial, "com.apple.mobilebackup2", true)
	require.NoError(t, err)
	conn.Close()
	require.NoError(t, c.Close())

	opts.Pair = lockdown.PairNever
	c, err = lockdown.Connect(ctx, d.dial, testUDID, d.store, opts)
	require.NoError(t, err, "stored record reused")
	require.NoError(t, c.Close())
	assert.Len(t, d.srv.PairedHosts(), 1)

	_, err = lockdown.Connect(ctx, d.dial, "00008110-0000000000000001", d.store, opts)
	assert.ErrorIs(t, err, lockdown.ErrUDIDMismatch)
}

func TestNoKeyMaterialInLogsOrErrors(t *testing.T) {
	d, rec := paired(t, func(c *lockdownd.Config) { c.WrongCert = true })
	c := d.client(t)
	err := c.StartSession(ctxT(t), rec)
	require.Error(t, err)
	d.logMu.Lock()
	logs := d.logs.String()
	d.logMu.Unlock()
	assert.NotEmpty(t, logs)
	for _, s := range []string{logs, err.Error()} {
		assert.NotContains(t, s, "PRIVATE KEY")
		assert.NotContains(t, s, "CERTIFICATE")
		assert.NotContains(t, s, string(rec.HostPrivateKey[40:80]))
		assert.NotContains(t, s, string(rec.RootPrivateKey[40:80]))
	}
	fi, err := os.Stat(filepath.Join(d.dir, "lockdownd.plist"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "device state holds the device key")
}

func TestContextCancelUnblocks(t *testing.T) {
	d := startDevice(t, nil)
	c := d.client(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.QueryType(ctx)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestConnectOldIOSValidatesPair(t *testing.T) {
	// iOS < 7: ValidatePair before StartSession (client-needs §2.4 step 6),
	// and TLS capped at 1.0 by the client.
	d := startDevice(t, func(c *lockdownd.Config) { c.Values["ProductVersion"] = "6.1.6" })
	ctx := ctxT(t)
	c, err := lockdown.Connect(ctx, d.dial, testUDID, d.store, &lockdown.ConnectOptions{Client: *d.opts(t)})
	require.NoError(t, err)
	st, ok := c.TLSState()
	require.True(t, ok)
	assert.Equal(t, uint16(tls.VersionTLS10), st.Version, "capped like libimobiledevice for iOS < 10")
	conn, err := c.StartService(ctx, d.dial, "com.apple.mobilebackup2", true)
	require.NoError(t, err)
	assert.Equal(t, uint16(tls.VersionTLS10), conn.(*tls.Conn).ConnectionState().Version)
	conn.Close()
	v, err := c.GetValue(ctx, "", "BuildVersion")
	require.NoError(t, err)
	assert.Equal(t, "21F90", v)
	require.NoError(t, c.Close())
	d.logMu.Lock()
	defer d.logMu.Unlock()
	assert.Contains(t, d.logs.String(), "request=ValidatePair")
}

func TestEverySentinelHasAHint(t *testing.T) {
	for _, e := range []*lockdown.Error{
		lockdown.ErrPasswordProtected, lockdown.ErrUserDeniedPairing, lockdown.ErrPairingDialogResponsePending,
		lockdown.ErrInvalidHostID, lockdown.ErrMissingHostID, lockdown.ErrSessionActive, lockdown.ErrSessionInactive,
		lockdown.ErrInvalidService, lockdown.ErrMissingValue, lockdown.ErrGetProhibited, lockdown.ErrSetProhibited,
		lockdown.ErrEscrowLocked, lockdown.ErrInvalidPairRecord, lockdown.ErrPairingProhibitedOverThisConnection,
	} {
		assert.NotEmpty(t, e.Hint(), e.Code)
	}
	assert.Empty(t, (&lockdown.Error{Code: "SomethingNew"}).Hint())
}

func TestCloseUnblocksPendingRequest(t *testing.T) {
	// A peer that never answers: Close must not wait for the 30 s timeout.
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		go func() { _, _ = io.Copy(io.Discard, b) }()
		c := lockdown.NewClient(a, nil)
		errc := make(chan error, 1)
		go func() {
			_, err := c.QueryType(context.Background())
			errc <- err
		}()
		synctest.Wait() // the request is written and the reply awaited
		start := time.Now()
		require.NoError(t, c.Close())
		assert.Error(t, <-errc)
		assert.Zero(t, time.Since(start), "no timeout waited for")
	})
}
