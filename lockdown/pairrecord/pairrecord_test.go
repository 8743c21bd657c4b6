package pairrecord

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sample() *Record {
	return &Record{
		DeviceCertificate: []byte("-----BEGIN CERTIFICATE-----\nd\n-----END CERTIFICATE-----\n"),
		HostCertificate:   []byte("h"), HostPrivateKey: []byte("hk"),
		RootCertificate: []byte("r"), RootPrivateKey: []byte("rk"),
		HostID: "7A5C0D1E-0000-4000-8000-000000000001", SystemBUID: "B", EscrowBag: []byte{1, 2},
		WiFiMACAddress: "a4:c3:f0:11:22:33",
	}
}

func TestSaveLoadDelete(t *testing.T) {
	d := Dir{Path: filepath.Join(t.TempDir(), "lockdown")}
	const udid = "00008110-001E2D3C4B5A6978"
	_, err := d.Load(udid)
	require.ErrorIs(t, err, ErrNotFound)

	require.NoError(t, d.Save(udid, sample()))
	st, err := os.Stat(filepath.Join(d.Path, udid+".plist"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	got, err := d.Load(udid)
	require.NoError(t, err)
	assert.Equal(t, sample(), got)

	ids, err := d.List()
	require.NoError(t, err)
	assert.Equal(t, []string{udid}, ids)

	require.NoError(t, d.Delete(udid))
	assert.ErrorIs(t, d.Delete(udid), ErrNotFound)
}

func TestSaveRawKeepsUnknownKeysAsXML(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	b, err := sample().Marshal()
	require.NoError(t, err)
	require.NoError(t, d.SaveRaw("abc", b))
	raw, err := d.LoadRaw("abc")
	require.NoError(t, err)
	assert.Contains(t, string(raw), "<key>HostID</key>")
}

func TestBadUDIDs(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	for _, u := range []string{"", "..", "../x", "a/b", ".hidden"} {
		assert.Error(t, d.Save(u, sample()), u)
	}
}

func TestSystemBUIDStable(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	a, err := d.SystemBUID()
	require.NoError(t, err)
	b, err := d.SystemBUID()
	require.NoError(t, err)
	assert.Equal(t, a, b)
	assert.Regexp(t, `^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`, a)
}

func TestParseRequiresFields(t *testing.T) {
	r := sample()
	r.HostID = ""
	b, err := r.Marshal()
	require.NoError(t, err)
	_, err = Parse(b)
	assert.ErrorContains(t, err, "HostID")
}
