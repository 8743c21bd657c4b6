package afc

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPacketRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	f := NewFramer(&buf, &buf)
	in := []*Packet{
		{Num: 1, Op: OpFileRefOpen, HeaderData: AppendCString(AppendUint64(nil, 2), "/com.apple.itunes.lock_sync")},
		{Num: 2, Op: OpFileRefWrite, HeaderData: AppendUint64(nil, 7), Payload: []byte("hello")},
		{Num: 3, Op: OpData}, // this == entire == 40: EOF data reply
	}
	for _, p := range in {
		require.NoError(t, f.WritePacket(p))
	}
	for _, want := range in {
		got, err := f.ReadPacket()
		require.NoError(t, err)
		assert.Equal(t, want.Num, got.Num)
		assert.Equal(t, want.Op, got.Op)
		assert.Equal(t, want.HeaderData, got.HeaderData)
		assert.Equal(t, want.Payload, got.Payload)
	}
	_, err := f.ReadPacket()
	assert.ErrorIs(t, err, io.EOF)
}

func TestWireLayout(t *testing.T) {
	// libimobiledevice-client-needs.md §5.1: u64 LE entire, this, num, op.
	b := AppendPacket(nil, &Packet{Num: 5, Op: OpStatus, HeaderData: AppendUint64(nil, 19)})
	want := []byte("CFA6LPAA" +
		"\x30\x00\x00\x00\x00\x00\x00\x00" + // entire 48
		"\x30\x00\x00\x00\x00\x00\x00\x00" + // this 48
		"\x05\x00\x00\x00\x00\x00\x00\x00" + // packet number
		"\x01\x00\x00\x00\x00\x00\x00\x00" + // STATUS
		"\x13\x00\x00\x00\x00\x00\x00\x00") // 19 would block
	assert.Equal(t, want, b)
}

func header(entire, this uint64) []byte {
	b := []byte(Magic)
	b = AppendUint64(b, entire)
	b = AppendUint64(b, this)
	b = AppendUint64(b, 1)
	return AppendUint64(b, uint64(OpStatus))
}

func TestParseHeaderRejects(t *testing.T) {
	bad := header(48, 48)
	copy(bad, "XXXXXXXX")
	cases := map[string]struct {
		b   []byte
		err error
	}{
		"magic":        {bad, ErrBadMagic},
		"this<40":      {header(40, 39), ErrBadLength},
		"entire<this":  {header(41, 48), ErrBadLength},
		"header data":  {header(40+DefaultMaxHeaderData+1, 40+DefaultMaxHeaderData+1), ErrPacketTooBig},
		"payload":      {header(48+DefaultMaxPayload+1, 48), ErrPacketTooBig},
		"short header": {header(48, 48)[:39], ErrBadLength},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, _, _, err := ParseHeader(c.b, DefaultMaxHeaderData, DefaultMaxPayload)
			assert.ErrorIs(t, err, c.err)
		})
	}
}

func TestReadPacketLyingLength(t *testing.T) {
	// A header promising 8 MiB followed by EOF must fail without the full
	// allocation and report an unexpected EOF.
	f := NewFramer(io.Discard, bytes.NewReader(header(40+DefaultMaxPayload, 40)))
	_, err := f.ReadPacket()
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	f = NewFramer(io.Discard, bytes.NewReader(header(48, 48)[:20]))
	_, err = f.ReadPacket()
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

func TestWritePacketBounded(t *testing.T) {
	f := NewFramer(io.Discard, nil)
	f.MaxPayload = 4
	err := f.WritePacket(&Packet{Op: OpFileRefWrite, Payload: []byte("12345")})
	assert.ErrorIs(t, err, ErrPacketTooBig)
}

func TestNames(t *testing.T) {
	assert.Equal(t, "RemovePathAndContents", OpRemovePathAndContents.String())
	assert.Equal(t, "Opcode(0x99)", Opcode(0x99).String())
	assert.Equal(t, "operation would block", StatusOpWouldBlock.String())
	assert.Equal(t, "status 99", Status(99).String())
	assert.Equal(t, "r+", ModeRW.String())
	assert.Equal(t, "exclusive", LockExclusive.String())
	assert.Equal(t, LockOp(6), LockExclusive)
	assert.Equal(t, LockOp(12), LockUnlock)
	err := error(&Error{Op: OpRemovePath, Path: "/a", Status: StatusUnknownError})
	assert.ErrorIs(t, err, ErrDirNotEmpty)
	assert.ErrorIs(t, err, StatusUnknownError)
	assert.False(t, errors.Is(&Error{Op: OpMakeDir, Status: StatusUnknownError}, ErrDirNotEmpty))
	assert.Equal(t, `afc: RemovePath "/a": unknown error`, err.Error())
}

func TestFileInfoRoundTrip(t *testing.T) {
	body := AppendStrings(nil, "st_size", "1234", "st_blocks", "8", "st_nlink", "1",
		"st_ifmt", "S_IFREG", "st_mtime", "1700000000123456789", "st_birthtime", "1600000000000000000")
	fi, err := ParseFileInfo(body)
	require.NoError(t, err)
	assert.Equal(t, int64(1234), fi.Size)
	assert.Equal(t, int64(1700000000123456789), fi.ModTime.UnixNano())
	assert.False(t, fi.IsDir())
	assert.Equal(t, body, fi.Encode())

	_, err = ParseFileInfo(AppendStrings(nil, "st_size"))
	assert.ErrorIs(t, err, ErrMalformed)
	_, err = ParseFileInfo(AppendStrings(nil, "st_ifmt", "S_IFDIR"))
	assert.ErrorIs(t, err, ErrMalformed)
	_, err = ParseFileInfo(AppendStrings(nil, "st_size", "x1"))
	assert.ErrorIs(t, err, ErrMalformed)
	assert.Nil(t, ParseStrings(nil))
	assert.Equal(t, []string{"a", "b"}, ParseStrings([]byte("a\x00b")))
}

// FuzzReadPacket: whatever parses re-encodes to the bytes it came from.
func FuzzReadPacket(f *testing.F) {
	f.Add(AppendPacket(nil, &Packet{Num: 1, Op: OpStatus, HeaderData: AppendUint64(nil, 0)}))
	f.Add(AppendPacket(nil, &Packet{Num: 9, Op: OpData, Payload: []byte("abc")}))
	f.Add(header(48, 48))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := NewFramer(io.Discard, bytes.NewReader(b))
		fr.MaxPayload, fr.MaxHeaderData = 1<<16, 1<<12
		p, err := fr.ReadPacket()
		if err != nil {
			return
		}
		enc := AppendPacket(nil, p)
		if !bytes.Equal(enc, b[:len(enc)]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", enc, b[:len(enc)])
		}
	})
}

// FuzzParseFileInfo: parsing never panics, and a parsed info re-encodes to
// something that parses to the same values.
func FuzzParseFileInfo(f *testing.F) {
	f.Add(AppendStrings(nil, "st_size", "1", "st_ifmt", "S_IFDIR"))
	f.Add([]byte("st_size\x00-5\x00LinkTarget\x00/x\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fi, err := ParseFileInfo(b)
		if err != nil {
			return
		}
		again, err := ParseFileInfo(fi.Encode())
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if again.Size != fi.Size || again.ModTime.UnixNano() != fi.ModTime.UnixNano() {
			t.Fatalf("round trip changed values")
		}
	})
}
