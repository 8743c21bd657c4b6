package backupfmt

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"howett.net/plist"
)

func TestFileIDKnownConstant(t *testing.T) {
	// format §5.1 (The iPhone Wiki example)
	assert.Equal(t, "3d0d7e5fb2ce288813306e4d4636395e047a3d28", FileID("HomeDomain", "Library/SMS/sms.db"))
	assert.True(t, ValidFileID(FileID("a", "b")))
	assert.False(t, ValidFileID("3D0D7E5FB2CE288813306E4D4636395E047A3D28"))
	assert.False(t, ValidFileID("../x"))
}

func sampleFiles() []*MBFile {
	return []*MBFile{
		{RelativePath: "Library/SMS/sms.db", LastModified: 1609459200, LastStatusChange: 1609459201, Birth: 1609450000,
			Size: 1234, Mode: 0o100600, UserID: 501, GroupID: 501, InodeNumber: 123456789, ProtectionClass: 3},
		{RelativePath: "", Mode: 0o40755, UserID: 0xfffffffe, GroupID: 0xfffffffe, Flags: 128},
		{RelativePath: "Library/link", Target: "/var/mobile/x", Mode: 0o120755, UserID: 501, GroupID: 501},
		{RelativePath: "Documents/ü file.txt", Size: 5, Mode: 0o100644, ProtectionClass: 4,
			Digest: bytes.Repeat([]byte{0xab}, 20), EncryptionKey: append([]byte{4, 0, 0, 0}, bytes.Repeat([]byte{1}, 40)...),
			ExtendedAttributes: mustPlist(map[string]any{"com.apple.x": []byte("v")})},
	}
}

func mustPlist(v any) []byte {
	b, err := plist.Marshal(v, plist.BinaryFormat)
	if err != nil {
		return nil
	}
	return b
}

func TestMBFileRoundTrip(t *testing.T) {
	for _, f := range sampleFiles() {
		b, err := EncodeMBFile(f)
		require.NoError(t, err)
		fast, ok := decodeMBFileFast(b)
		require.True(t, ok, "the device shape takes the fast path")
		assert.Equal(t, f, fast)
		assert.True(t, bytes.HasPrefix(b, []byte("bplist00")))
		got, err := DecodeMBFile(b)
		require.NoError(t, err)
		assert.Equal(t, f, got)
	}
}

// TestMBFileArchiveShape checks the object table against
// real-device-profile.md: $null, MBFile dict, RelativePath, data objects with
// the NSMutableData class after the first, MBFile class last.
func TestMBFileArchiveShape(t *testing.T) {
	b, err := EncodeMBFile(sampleFiles()[3])
	require.NoError(t, err)
	var top map[string]any
	require.NoError(t, unmarshalPlist(b, &top))
	assert.Equal(t, "NSKeyedArchiver", top["$archiver"])
	assert.EqualValues(t, 100000, top["$version"])
	assert.Equal(t, map[string]any{"root": plist.UID(1)}, top["$top"])
	objs := top["$objects"].([]any)
	require.Len(t, objs, 8)
	assert.Equal(t, "$null", objs[0])
	root := objs[1].(map[string]any)
	assert.Equal(t, plist.UID(2), root["RelativePath"])
	assert.Equal(t, "Documents/ü file.txt", objs[2])
	assert.Equal(t, plist.UID(3), root["Digest"])
	assert.Equal(t, map[string]any{"$classname": "NSMutableData", "$classes": []any{"NSMutableData", "NSData", "NSObject"}}, objs[4])
	assert.Equal(t, plist.UID(7), root["$class"])
	assert.Equal(t, map[string]any{"$classname": "MBFile", "$classes": []any{"MBFile", "NSObject"}}, objs[7])
	for _, k := range []string{"LastModified", "LastStatusChange", "Birth", "Size", "Mode", "UserID", "GroupID", "InodeNumber", "ProtectionClass", "Flags"} {
		assert.Contains(t, root, k)
	}
	assert.NotContains(t, root, "Target")
	assert.NotContains(t, root, "Domain")
}

func TestDecodeMBFileVariants(t *testing.T) {
	archive := func(root map[string]any, extra ...any) []byte {
		objs := append([]any{"$null", root}, extra...)
		return mustPlist(map[string]any{"$archiver": "NSKeyedArchiver", "$version": 100000,
			"$top": map[string]any{"root": plist.UID(1)}, "$objects": objs})
	}
	t.Run("NSString and inline data, unknown keys", func(t *testing.T) {
		b := archive(map[string]any{"RelativePath": plist.UID(2), "Digest": []byte{1, 2}, "Mode": 0o100644, "Future": "x",
			"UserID": int64(-2)}, map[string]any{"NS.string": "a/b"})
		f, err := DecodeMBFile(b)
		require.NoError(t, err)
		assert.Equal(t, "a/b", f.RelativePath)
		assert.Equal(t, []byte{1, 2}, f.Digest)
		assert.Equal(t, uint32(0xfffffffe), f.UserID)
	})
	bad := map[string][]byte{
		"dangling UID":   archive(map[string]any{"RelativePath": plist.UID(9)}),
		"wrong class":    archive(map[string]any{"$class": plist.UID(2)}, map[string]any{"$classname": "NSDate"}),
		"string as int":  archive(map[string]any{"Size": "12"}),
		"negative size":  archive(map[string]any{"Size": int64(-1)}),
		"mode too big":   archive(map[string]any{"Mode": 1 << 20}),
		"root not dict":  mustPlist(map[string]any{"$top": map[string]any{"root": plist.UID(1)}, "$objects": []any{"$null", "x"}}),
		"data as string": archive(map[string]any{"EncryptionKey": plist.UID(2)}, "nope"),
		"no objects":     mustPlist(map[string]any{"$archiver": "NSKeyedArchiver"}),
		"not a plist":    []byte("hello"),
		"empty":          nil,
		"truncated":      archive(map[string]any{"Size": 1})[:40],
	}
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeMBFile(b)
			assert.ErrorIs(t, err, ErrMalformed)
		})
	}
}

func FuzzDecodeMBFile(f *testing.F) {
	for _, m := range sampleFiles() {
		b, err := EncodeMBFile(m)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte("bplist00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// The fast path, when it answers, agrees with the generic decoder.
		if fast, ok := decodeMBFileFast(b); ok {
			slow, err := decodeMBFileGeneric(b)
			require.NoError(t, err)
			require.Equal(t, slow, fast)
		}
		m, err := DecodeMBFile(b)
		if err != nil {
			return
		}
		enc, err := EncodeMBFile(m)
		require.NoError(t, err)
		m2, err := DecodeMBFile(enc)
		require.NoError(t, err)
		assert.Equal(t, normalize(m), normalize(m2))
	})
}

// normalize maps empty byte slices to nil (the encoder omits them).
func normalize(m *MBFile) *MBFile {
	c := *m
	for _, p := range []*[]byte{&c.Digest, &c.EncryptionKey, &c.ExtendedAttributes} {
		if len(*p) == 0 {
			*p = nil
		}
	}
	return &c
}
