package backupfmt

import (
	"bytes"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mbdbSample(t testing.TB) ([]byte, []Record) {
	var buf bytes.Buffer
	w, err := NewMBDBWriter(&buf)
	require.NoError(t, err)
	var recs []Record
	for _, f := range sampleFiles() {
		r := Record{Domain: "HomeDomain", RelativePath: f.RelativePath, File: f}
		if f.UserID == 0xfffffffe {
			r.Domain = "AppDomain-com.example"
		}
		require.NoError(t, w.Add(r))
		r.FileID = FileID(r.Domain, r.RelativePath)
		r.Flags = f.Type()
		recs = append(recs, r)
	}
	require.NoError(t, w.Flush())
	return buf.Bytes(), recs
}

func readAllMBDB(b []byte) ([]Record, error) {
	r, err := NewMBDBReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	var out []Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
}

func TestMBDBRoundTrip(t *testing.T) {
	b, recs := mbdbSample(t)
	assert.Equal(t, []byte("mbdb\x05\x00"), b[:6])
	got, err := readAllMBDB(b)
	require.NoError(t, err)
	require.Len(t, got, len(recs))
	for i := range recs {
		assert.Equal(t, recs[i].FileID, got[i].FileID)
		assert.Equal(t, recs[i].Flags, got[i].Flags)
		want := *recs[i].File
		want.Flags = 0 // mbdb has no st_flags
		assert.Equal(t, &want, got[i].File)
	}
}

// TestMBDBKnownBytes pins the record layout of format §5.7.
func TestMBDBKnownBytes(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewMBDBWriter(&buf)
	require.NoError(t, err)
	require.NoError(t, w.Add(Record{Domain: "D", RelativePath: "p", File: &MBFile{Mode: 0o100644, InodeNumber: 2,
		UserID: 501, GroupID: 501, LastModified: 3, LastStatusChange: 4, Birth: 5, Size: 6, ProtectionClass: 4}}))
	require.NoError(t, w.Flush())
	want := []byte("mbdb\x05\x00" +
		"\x00\x01D" + "\x00\x01p" + "\xff\xff" + "\xff\xff" + "\xff\xff" +
		"\x81\xa4" + "\x00\x00\x00\x00\x00\x00\x00\x02" + "\x00\x00\x01\xf5" + "\x00\x00\x01\xf5" +
		"\x00\x00\x00\x03" + "\x00\x00\x00\x04" + "\x00\x00\x00\x05" + "\x00\x00\x00\x00\x00\x00\x00\x06" +
		"\x04" + "\x00")
	assert.Equal(t, want, buf.Bytes())
}

func TestMBDBDamage(t *testing.T) {
	b, _ := mbdbSample(t)
	_, err := NewMBDBReader(bytes.NewReader([]byte("mbdx\x02\x00")))
	assert.ErrorIs(t, err, ErrMalformed)
	_, err = NewMBDBReader(bytes.NewReader([]byte("mb")))
	assert.ErrorIs(t, err, ErrMalformed)
	got, err := readAllMBDB(b[:len(b)-3])
	assert.ErrorIs(t, err, ErrMalformed)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Len(t, got, 3, "records before the damage are returned")
	// an empty mbdb (header only) has no records
	got, err = readAllMBDB([]byte("mbdb\x05\x00"))
	assert.NoError(t, err)
	assert.Empty(t, got)
}

func TestMBDBWriterLimits(t *testing.T) {
	w, err := NewMBDBWriter(io.Discard)
	require.NoError(t, err)
	assert.Error(t, w.Add(Record{Domain: "D"}))
	assert.Error(t, w.Add(Record{Domain: string(make([]byte, 70000)), File: &MBFile{}}))
	assert.Error(t, w.Add(Record{Domain: "D", File: &MBFile{LastModified: -1}}))
	assert.Error(t, w.Add(Record{Domain: "D", File: &MBFile{ExtendedAttributes: []byte("junk")}}))
}

func FuzzMBDB(f *testing.F) {
	b, _ := mbdbSample(f)
	f.Add(b)
	f.Add([]byte("mbdb\x05\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := readAllMBDB(b)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		w, err := NewMBDBWriter(&buf)
		require.NoError(t, err)
		for _, r := range recs {
			require.NoError(t, w.Add(r))
		}
		require.NoError(t, w.Flush())
		again, err := readAllMBDB(buf.Bytes())
		require.NoError(t, err)
		assert.Equal(t, recs, again)
	})
}
