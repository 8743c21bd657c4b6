package backupfmt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"howett.net/plist"
)

var testDate = time.Date(2026, 11, 24, 20, 0, 0, 0, time.UTC)

func sampleStatus() *Status {
	return &Status{Version: StatusVersion, UUID: "0E8A1B2C-3D4E-4F50-8A6B-7C8D9E0F1A2B", Date: testDate,
		BackupState: BackupStateNew, SnapshotState: SnapshotFinished, IsFullBackup: true}
}

func sampleInfo() *Info {
	return &Info{
		Applications: map[string]InfoApp{"com.example.app": {ApplicationSINF: []byte{1}, ITunesMetadata: []byte{2}}},
		BuildVersion: "18C66", DeviceName: "Test iPhone", DisplayName: "Test iPhone",
		GUID: "0123456789ABCDEF0123456789ABCDEF", IMEI: "350000000000000",
		InstalledApplications: []string{"com.example.app"}, LastBackupDate: testDate,
		ProductType: "iPhone13,2", ProductVersion: "14.3", SerialNumber: "F00000000000",
		TargetIdentifier: "00008101-000000000000001E", TargetType: "Device", UniqueIdentifier: "00008101-000000000000001E",
		ITunesFiles: map[string][]byte{"iTunesPrefs": {3}}, ITunesSettings: map[string]any{}, ITunesVersion: "10.0.1",
	}
}

func sampleManifest() *Manifest {
	return &Manifest{Version: ManifestVersionDB, SystemDomainsVersion: "24.0", Date: testDate, IsEncrypted: true,
		WasPasscodeSet: true, BackupKeyBag: []byte("VERS"), ManifestKey: make([]byte, 44),
		Lockdown: Lockdown{ProductVersion: "14.3", BuildVersion: "18C66", ProductType: "iPhone13,2", DeviceName: "Test iPhone",
			SerialNumber: "F00000000000", UniqueDeviceID: "00008101-000000000000001E",
			Extra: map[string]any{"com.apple.mobile.data_sync": map[string]any{}}},
		Applications: map[string]ManifestApp{"com.example.app": {CFBundleIdentifier: "com.example.app", CFBundleVersion: "1",
			Path: "/var/containers/Bundle/Application/X/App.app", ContainerContentClass: "Data/Application"}},
	}
}

func TestStatusRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Status.plist")
	require.NoError(t, WriteStatus(path, sampleStatus()))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), "bplist00"), "device writes binary")
	got, err := ReadStatus(path)
	require.NoError(t, err)
	assert.Equal(t, sampleStatus(), got)
	assert.NoError(t, got.Check())
	assert.True(t, got.Finished())
}

func TestStatusVariants(t *testing.T) {
	b := mustPlist(map[string]any{"Version": 2.4, "BackupState": "new", "SnapshotState": "uploading", "Backup Success": true})
	s, err := ParseStatus(b)
	require.NoError(t, err)
	assert.Equal(t, "2.4", s.Version)
	assert.NoError(t, s.Check())
	assert.False(t, s.Finished())
	assert.Equal(t, map[string]any{"Backup Success": true}, s.Extra)

	for name, st := range map[string]*Status{
		"old version":   {Version: "2.3", BackupState: "new", SnapshotState: "finished"},
		"future":        {Version: "4.0", BackupState: "new", SnapshotState: "finished"},
		"empty state":   {Version: "3.3", BackupState: "empty", SnapshotState: "finished"},
		"bad snapshot":  {Version: "3.3", BackupState: "new", SnapshotState: "weird"},
		"not a version": {Version: "x", BackupState: "new", SnapshotState: "finished"},
	} {
		assert.ErrorIs(t, st.Check(), ErrInvalid, name)
	}
	_, err = ParseStatus(mustPlist(map[string]any{"IsFullBackup": "yes"}))
	assert.ErrorIs(t, err, ErrMalformed)
	_, err = ParseStatus([]byte("bplist00\x00"))
	assert.ErrorIs(t, err, ErrMalformed)
}

func TestEmptyMetadataFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"Status.plist", "Info.plist", "Manifest.plist"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), nil, 0o644))
	}
	_, err := ReadStatus(filepath.Join(dir, "Status.plist"))
	assert.ErrorIs(t, err, ErrEmpty)
	_, err = ReadInfo(filepath.Join(dir, "Info.plist"))
	assert.ErrorIs(t, err, ErrEmpty)
	_, err = ReadManifest(filepath.Join(dir, "Manifest.plist"))
	assert.ErrorIs(t, err, ErrEmpty)
	_, err = ReadManifest(filepath.Join(dir, "missing.plist"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestInfoRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Info.plist")
	require.NoError(t, WriteInfo(path, sampleInfo()))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	s := string(b)
	assert.True(t, strings.HasPrefix(s, "<?xml"), "host writes XML")
	// keys in sorted order like idevicebackup2 (libimobiledevice-client-needs.md §4.4)
	assert.Less(t, strings.Index(s, "<key>Build Version</key>"), strings.Index(s, "<key>Unique Identifier</key>"))
	assert.Less(t, strings.Index(s, "<key>Unique Identifier</key>"), strings.Index(s, "<key>iTunes Version</key>"))
	got, err := ReadInfo(path)
	require.NoError(t, err)
	assert.Equal(t, sampleInfo(), got)
}

func TestInfoVariants(t *testing.T) {
	// pymobiledevice3 writes GUID as 16 raw bytes (format §5.2); TrollRestore writes {}.
	in, err := ParseInfo(mustPlist(map[string]any{"GUID": []byte{0xde, 0xad}, "Unknown": int64(1)}))
	require.NoError(t, err)
	assert.Equal(t, "DEAD", in.GUID)
	assert.Equal(t, map[string]any{"Unknown": uint64(1)}, in.Extra)
	_, err = ParseInfo(mustPlist(map[string]any{}))
	assert.NoError(t, err)
	_, err = ParseInfo(mustPlist(map[string]any{"Applications": map[string]any{"x": "y"}}))
	assert.ErrorIs(t, err, ErrMalformed)
	_, err = ParseInfo(mustPlist([]any{"not a dict"}))
	assert.ErrorIs(t, err, ErrMalformed)
}

func TestManifestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Manifest.plist")
	require.NoError(t, WriteManifest(path, sampleManifest()))
	got, err := ReadManifest(path)
	require.NoError(t, err)
	assert.Equal(t, sampleManifest(), got)

	_, err = ParseManifest(mustPlist(map[string]any{"Lockdown": map[string]any{"ProductVersion": 14}}))
	assert.ErrorIs(t, err, ErrMalformed)
}

func fuzzSeeds(f *testing.F, seeds ...func() ([]byte, error)) {
	for _, s := range seeds {
		b, err := s()
		require.NoError(f, err)
		f.Add(b)
		x, err := plist.MarshalIndent(mustDecode(b), plist.XMLFormat, "\t")
		require.NoError(f, err)
		f.Add(x)
	}
}

func mustDecode(b []byte) any {
	var v any
	_ = unmarshalPlist(b, &v)
	return v
}

func FuzzParseStatus(f *testing.F) {
	fuzzSeeds(f, sampleStatus().Marshal)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStatus(b)
		if err != nil {
			return
		}
		_ = s.Check()
		enc, err := s.Marshal()
		if err != nil {
			return // e.g. a dict value the encoder cannot represent
		}
		_, err = ParseStatus(enc)
		assert.NoError(t, err)
	})
}

func FuzzParseInfo(f *testing.F) {
	fuzzSeeds(f, sampleInfo().Marshal)
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := ParseInfo(b)
		if err != nil {
			return
		}
		if enc, err := in.Marshal(); err == nil {
			_, err = ParseInfo(enc)
			assert.NoError(t, err)
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	fuzzSeeds(f, sampleManifest().Marshal)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		if enc, err := m.Marshal(); err == nil {
			_, err = ParseManifest(enc)
			assert.NoError(t, err)
		}
	})
}
