package usbmuxd

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// libusbmuxdConnect is a Connect request as libusbmuxd 2.0.2 writes it
// (libimobiledevice-client-needs.md §1.3–§1.4; built by us).
const libusbmuxdConnect = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>ClientVersionString</key>
	<string>libusbmuxd 2.0.2</string>
	<key>MessageType</key>
	<string>Connect</string>
	<key>ProgName</key>
	<string>ideviceinfo</string>
	<key>kLibUSBMuxVersion</key>
	<integer>3</integer>
	<key>DeviceID</key>
	<integer>7</integer>
	<key>PortNumber</key>
	<integer>32498</integer>
</dict>
</plist>
`

func TestParseRequestLibusbmuxd(t *testing.T) {
	r, err := ParseRequest([]byte(libusbmuxdConnect))
	require.NoError(t, err)
	assert.Equal(t, &Request{
		MessageType: MsgConnect, ClientVersionString: "libusbmuxd 2.0.2", ProgName: "ideviceinfo",
		LibUSBMuxVersion: 3, DeviceID: 7, HasDeviceID: true, Port: 62078, HasPort: true,
	}, r)
}

func TestParseRequestLenientTypes(t *testing.T) {
	b, err := plistconn.Marshal(map[string]any{
		"MessageType":    "SavePairRecord",
		"DeviceID":       "seven", // not an integer: reads as 0 (M-b6)
		"PairRecordID":   42,      // not a string: absent
		"PairRecordData": "text",  // not data: absent
	}, plistconn.Binary) // binary requests are accepted too
	require.NoError(t, err)
	r, err := ParseRequest(b)
	require.NoError(t, err)
	assert.True(t, r.HasDeviceID)
	assert.Zero(t, r.DeviceID)
	assert.Empty(t, r.PairRecordID)
	assert.Nil(t, r.PairRecordData)
	assert.False(t, r.HasPort)
}

func TestParseRequestErrors(t *testing.T) {
	for name, in := range map[string]string{
		"garbage":         "not a plist at all",
		"array":           `<plist version="1.0"><array><string>x</string></array></plist>`,
		"no MessageType":  `<plist version="1.0"><dict><key>X</key><string>y</string></dict></plist>`,
		"int MessageType": `<plist version="1.0"><dict><key>MessageType</key><integer>1</integer></dict></plist>`,
		"empty":           "",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseRequest([]byte(in))
			assert.ErrorIs(t, err, ErrBadPlist)
		})
	}
}

func TestRepliesAsUsbmuxdWritesThem(t *testing.T) {
	d := Device{ID: 3, UDID: testUDID(0), ProductID: 0x12A8}
	b, err := marshalXML(&DeviceListReply{DeviceList: []AttachedMessage{d.attached()}})
	require.NoError(t, err)
	s := string(b)
	assert.True(t, bytes.HasPrefix(b, []byte("<?xml")), "libplist wants an XML declaration")
	assert.Contains(t, s, "<key>ConnectionType</key>\n\t\t\t\t\t<string>USB</string>")
	assert.Contains(t, s, "<key>ConnectionSpeed</key>\n\t\t\t\t\t<integer>480000000</integer>")
	assert.Contains(t, s, "<key>SerialNumber</key>\n\t\t\t\t\t<string>"+testUDID(0)+"</string>")
	assert.Contains(t, s, "<key>ProductID</key>\n\t\t\t\t\t<integer>4776</integer>")
	assert.Equal(t, 1, bytes.Count(b, []byte("<key>MessageType</key>")), "only the entry has a MessageType, not the reply (§1.4)")

	r, err := ParseReply(b)
	require.NoError(t, err)
	require.Len(t, r.DeviceList, 1)
	assert.Empty(t, r.MessageType)
	got := deviceFromProperties(r.DeviceList[0].DeviceID, &r.DeviceList[0].Properties)
	assert.Equal(t, Device{ID: 3, UDID: testUDID(0), ProductID: 0x12A8, Speed: DefaultSpeed, ConnectionType: "USB"}, got)
}

func TestRequestMarshalRoundTrip(t *testing.T) {
	in := &Request{MessageType: MsgSavePairRecord, ProgName: "t", LibUSBMuxVersion: 3,
		DeviceID: 0, HasDeviceID: true, PairRecordID: "u", PairRecordData: []byte("bplist00")}
	b, err := in.Marshal()
	require.NoError(t, err)
	assert.Contains(t, string(b), "<key>DeviceID</key>\n\t\t<integer>0</integer>", "a present zero is still sent")
	out, err := ParseRequest(b)
	require.NoError(t, err)
	assert.Equal(t, in, out)
}

// FuzzParseRequest: any payload parses or fails cleanly, and what parses
// survives Marshal and a second parse unchanged.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(libusbmuxdConnect))
	f.Add([]byte(`<plist><dict><key>MessageType</key><string>ReadBUID</string></dict></plist>`))
	f.Add([]byte("bplist00\xd1\x01\x02"))
	f.Add([]byte("<plist><dict><key>MessageType</key><string>A\x01</string></dict></plist>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRequest(data)
		if err != nil {
			return
		}
		b, err := r.Marshal()
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		r2, err := ParseRequest(b)
		if err != nil {
			t.Fatalf("reparse: %v\n%s", err, b)
		}
		if len(r.PairRecordData) == 0 {
			r.PairRecordData, r2.PairRecordData = nil, nil
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed the request:\n%+v\n%+v", r, r2)
		}
	})
}

// FuzzParseReply: reply decoding never panics.
func FuzzParseReply(f *testing.F) {
	b, _ := marshalXML(&DeviceListReply{DeviceList: []AttachedMessage{(Device{ID: 1, UDID: "x"}).attached()}})
	f.Add(b)
	f.Add([]byte(`<plist><dict><key>Number</key><string>x</string></dict></plist>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseReply(data)
		fr := &Frame{Type: TypePlist, Payload: data}
		_, _, _ = decodeEvent(fr)
	})
}
