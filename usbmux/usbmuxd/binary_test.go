package usbmuxd

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	require.NoError(t, err)
	return b
}

// TestConnectExample checks the CONNECT example of usb-usbmux-lockdown.md
// §3.3: tag 5, device 3, port 62078.
func TestConnectExample(t *testing.T) {
	want := unhex(t, "18000000 00000000 02000000 05000000 03000000 F27E 0000")
	got, err := AppendFrame(nil, &Frame{Version: ProtoBinary, Type: TypeConnect, Tag: 5,
		Payload: ConnectRequest{DeviceID: 3, Port: 62078}.Append(nil)})
	require.NoError(t, err)
	assert.Equal(t, want, got)
	req, err := ParseConnect(want[HeaderSize:])
	require.NoError(t, err)
	assert.Equal(t, ConnectRequest{DeviceID: 3, Port: 62078}, req)
	_, err = ParseConnect(want[HeaderSize : HeaderSize+5])
	assert.ErrorIs(t, err, ErrShortPayload)
}

func TestSwapPort(t *testing.T) {
	assert.Equal(t, uint16(32498), SwapPort(62078), "lockdown is 32498 on the wire")
	assert.Equal(t, uint16(5632), SwapPort(22))
	assert.Equal(t, uint16(62078), SwapPort(SwapPort(62078)))
}

func TestDeviceRecord(t *testing.T) {
	d := DeviceRecord{DeviceID: 7, ProductID: 0x12A8, SerialNumber: testUDID(1), Location: 0x00030004}
	b := d.Append(nil)
	require.Len(t, b, DeviceRecordSize)
	assert.Equal(t, unhex(t, "07000000 A812"), b[:6])
	assert.Equal(t, unhex(t, "0000 04000300"), b[262:])
	got, err := ParseDeviceRecord(b)
	require.NoError(t, err)
	assert.Equal(t, d, got)

	long := DeviceRecord{SerialNumber: strings.Repeat("x", 300)}
	got, err = ParseDeviceRecord(long.Append(nil))
	require.NoError(t, err)
	assert.Len(t, got.SerialNumber, 255, "the serial field always ends in NUL")

	_, err = ParseDeviceRecord(b[:100])
	assert.ErrorIs(t, err, ErrShortPayload)
}

func TestResultAndDeviceID(t *testing.T) {
	c, err := ParseResult(AppendResult(nil, ResultConnRefused))
	require.NoError(t, err)
	assert.Equal(t, ResultConnRefused, c)
	_, err = ParseResult([]byte{1})
	assert.ErrorIs(t, err, ErrShortPayload)
	id, err := ParseDeviceID(AppendDeviceID(nil, 9))
	require.NoError(t, err)
	assert.Equal(t, uint32(9), id)
	_, err = ParseDeviceID(nil)
	assert.ErrorIs(t, err, ErrShortPayload)
}

func TestResultErrorIs(t *testing.T) {
	err := error(&ResultError{Op: "Connect", Code: ResultConnRefused})
	assert.ErrorIs(t, err, ErrConnRefused)
	assert.NotErrorIs(t, err, ErrBadDevice)
	assert.ErrorIs(t, &ResultError{Code: ResultBadDevice}, ErrBadDevice)
	assert.ErrorIs(t, &ResultError{Code: ResultBadCommand}, ErrBadCommand)
	assert.ErrorIs(t, &ResultError{Code: ResultBadVersion}, ErrBadVersion)
	assert.Equal(t, "usbmuxd: Connect: result 3 (CONNREFUSED)", err.Error())
}

// FuzzDeviceRecord round-trips arbitrary DEVICE_ADD payloads.
func FuzzDeviceRecord(f *testing.F) {
	f.Add(DeviceRecord{DeviceID: 1, ProductID: 0x12a8, SerialNumber: "abc", Location: 5}.Append(nil))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDeviceRecord(data)
		if err != nil {
			return
		}
		d2, err := ParseDeviceRecord(d.Append(nil))
		if err != nil || d2 != d {
			t.Fatalf("round trip: %+v vs %+v (%v)", d, d2, err)
		}
		if _, err := ParseConnect(data); err != nil {
			t.Fatal(err)
		}
	})
}
