package usbmuxd

import (
	"errors"
	"fmt"
	"math"

	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// Plist protocol (version 1) messages, usb-usbmux-lockdown.md §3.4 and
// libimobiledevice-client-needs.md §1.3–§1.4. Every message is one
// dictionary; requests carry MessageType plus the client identification
// keys, replies are written as XML because libusbmuxd 2.0.2 parses replies
// with plist_from_xml only.

// Plist MessageType values: requests (§3.4 table) and the messages a daemon
// sends with a MessageType (Result and the three notifications).
const (
	MsgListen           = "Listen"           // MsgListen subscribes to events.
	MsgConnect          = "Connect"          // MsgConnect opens a device port.
	MsgListDevices      = "ListDevices"      // MsgListDevices lists devices.
	MsgListListeners    = "ListListeners"    // MsgListListeners lists listening clients.
	MsgReadBUID         = "ReadBUID"         // MsgReadBUID reads the SystemBUID.
	MsgReadPairRecord   = "ReadPairRecord"   // MsgReadPairRecord reads a pair record.
	MsgSavePairRecord   = "SavePairRecord"   // MsgSavePairRecord stores a pair record.
	MsgDeletePairRecord = "DeletePairRecord" // MsgDeletePairRecord removes a pair record.
	MsgResult           = "Result"           // MsgResult carries a result Number.
	MsgAttached         = "Attached"         // MsgAttached announces a device.
	MsgDetached         = "Detached"         // MsgDetached announces a detach.
	MsgPaired           = "Paired"           // MsgPaired announces a saved pair record.
)

// ErrBadPlist reports a plist payload that is not a dictionary with a string
// MessageType.
var ErrBadPlist = errors.New("usbmuxd: malformed plist message")

// Request is a plist-protocol request. The Has* fields tell whether an
// optional key was present, because usbmuxd answers differently for a
// missing key and a zero value.
type Request struct {
	MessageType string
	// Client identification, kept by the daemon for ListListeners.
	ClientVersionString string
	ProgName            string
	BundleID            string
	LibUSBMuxVersion    uint64

	// Connect and SavePairRecord. A DeviceID that is present but not an
	// integer reads as 0, as in usbmuxd (corrections.md M-b6).
	DeviceID    uint32
	HasDeviceID bool
	// Port is the device port in host order (the wire value is swapped,
	// see SwapPort); HasPort is false when PortNumber is absent.
	Port    uint16
	HasPort bool

	// Pair-record commands. PairRecordID is "" when absent or not a string.
	PairRecordID   string
	PairRecordData []byte
}

// ParseRequest decodes a plist request (XML or binary). Keys with the wrong
// type are treated like usbmuxd treats them: strings and data that are not
// strings or data read as absent, integers that are not integers read as 0.
func ParseRequest(payload []byte) (*Request, error) {
	var m map[string]any
	if err := plistconn.Unmarshal(payload, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPlist, err)
	}
	mt, ok := m["MessageType"].(string)
	if !ok {
		return nil, fmt.Errorf("%w: no string MessageType", ErrBadPlist)
	}
	r := &Request{MessageType: mt}
	r.ClientVersionString, _ = m["ClientVersionString"].(string)
	r.ProgName, _ = m["ProgName"].(string)
	r.BundleID, _ = m["BundleID"].(string)
	r.LibUSBMuxVersion, _ = asUint(m["kLibUSBMuxVersion"])
	if v, ok := m["DeviceID"]; ok {
		r.HasDeviceID = true
		id, _ := asUint(v)
		if id <= math.MaxUint32 {
			r.DeviceID = uint32(id)
		}
	}
	if v, ok := m["PortNumber"]; ok {
		r.HasPort = true
		p, _ := asUint(v)
		r.Port = SwapPort(uint16(p)) // usbmuxd keeps the low 16 bits
	}
	r.PairRecordID, _ = m["PairRecordID"].(string)
	r.PairRecordData, _ = m["PairRecordData"].([]byte)
	return r, nil
}

// asUint reads a plist integer node; negative or non-integer values give
// (0, false).
func asUint(v any) (uint64, bool) {
	switch n := v.(type) {
	case uint64:
		return n, true
	case int64:
		if n >= 0 {
			return uint64(n), true
		}
	}
	return 0, false
}

// requestPlist is the wire shape of a Request; keys are written in sorted
// order by the encoder, as Apple's and libplist's writers do.
type requestPlist struct {
	MessageType         string  `plist:"MessageType"`
	ClientVersionString string  `plist:"ClientVersionString,omitempty"`
	ProgName            string  `plist:"ProgName,omitempty"`
	BundleID            string  `plist:"BundleID,omitempty"`
	LibUSBMuxVersion    uint64  `plist:"kLibUSBMuxVersion,omitempty"`
	DeviceID            *uint64 `plist:"DeviceID,omitempty"`
	PortNumber          *uint64 `plist:"PortNumber,omitempty"`
	PairRecordID        string  `plist:"PairRecordID,omitempty"`
	PairRecordData      []byte  `plist:"PairRecordData,omitempty"`
}

// Marshal encodes the request as an XML plist, as libusbmuxd sends it.
func (r *Request) Marshal() ([]byte, error) {
	w := requestPlist{
		MessageType:         r.MessageType,
		ClientVersionString: r.ClientVersionString,
		ProgName:            r.ProgName,
		BundleID:            r.BundleID,
		LibUSBMuxVersion:    r.LibUSBMuxVersion,
		PairRecordID:        r.PairRecordID,
		PairRecordData:      r.PairRecordData,
	}
	if r.HasDeviceID {
		id := uint64(r.DeviceID)
		w.DeviceID = &id
	}
	if r.HasPort {
		p := uint64(SwapPort(r.Port))
		w.PortNumber = &p
	}
	b, err := plistconn.Marshal(&w, plistconn.XML)
	if err != nil {
		return nil, fmt.Errorf("usbmuxd: encode %s: %w", r.MessageType, err)
	}
	return b, nil
}

// ResultMessage is {MessageType:"Result", Number:n}.
type ResultMessage struct {
	MessageType string `plist:"MessageType"`
	Number      uint64 `plist:"Number"`
}

// DeviceProperties is the Properties dictionary of Attached messages and
// DeviceList entries, with the keys Linux usbmuxd sends (§3.4).
type DeviceProperties struct {
	ConnectionSpeed uint64 `plist:"ConnectionSpeed"`
	ConnectionType  string `plist:"ConnectionType"`
	DeviceID        uint64 `plist:"DeviceID"`
	LocationID      uint64 `plist:"LocationID"`
	ProductID       uint64 `plist:"ProductID"`
	SerialNumber    string `plist:"SerialNumber"`
}

// AttachedMessage announces a device, and is also the shape of each
// DeviceList entry.
type AttachedMessage struct {
	MessageType string           `plist:"MessageType"`
	DeviceID    uint64           `plist:"DeviceID"`
	Properties  DeviceProperties `plist:"Properties"`
}

// DeviceIDMessage is a Detached or Paired notification.
type DeviceIDMessage struct {
	MessageType string `plist:"MessageType"`
	DeviceID    uint64 `plist:"DeviceID"`
}

// DeviceListReply answers ListDevices. It has no MessageType: libusbmuxd
// treats any MessageType other than the four it knows as an error (§1.4).
type DeviceListReply struct {
	DeviceList []AttachedMessage `plist:"DeviceList"`
}

// BUIDReply answers ReadBUID (no MessageType).
type BUIDReply struct {
	BUID string `plist:"BUID"`
}

// PairRecordReply answers ReadPairRecord with the stored file's bytes (no
// MessageType). Not found is a Result instead; an empty reply would crash
// libimobiledevice 1.3.0 (libimobiledevice-client-needs.md §1.7).
type PairRecordReply struct {
	PairRecordData []byte `plist:"PairRecordData"`
}

// ListenerInfo is one entry of a ListListeners reply.
type ListenerInfo struct {
	Blacklisted      bool   `plist:"Blacklisted"`
	BundleID         string `plist:"BundleID,omitempty"`
	ConnType         uint64 `plist:"ConnType"`
	IDString         string `plist:"ID String"`
	ProgName         string `plist:"ProgName"`
	LibUSBMuxVersion uint64 `plist:"kLibUSBMuxVersion"`
}

// ListenerListReply answers ListListeners.
type ListenerListReply struct {
	ListenerList []ListenerInfo `plist:"ListenerList"`
}

// Reply is any plist message a daemon sends, decoded leniently: absent keys
// stay zero. MessageType is "" for the replies that carry none.
type Reply struct {
	MessageType    string            `plist:"MessageType"`
	Number         uint64            `plist:"Number"`
	DeviceID       uint64            `plist:"DeviceID"`
	Properties     *DeviceProperties `plist:"Properties"`
	DeviceList     []AttachedMessage `plist:"DeviceList"`
	ListenerList   []ListenerInfo    `plist:"ListenerList"`
	BUID           string            `plist:"BUID"`
	PairRecordData []byte            `plist:"PairRecordData"`
}

// ParseReply decodes a plist message from a daemon.
func ParseReply(payload []byte) (*Reply, error) {
	var r Reply
	if err := plistconn.Unmarshal(payload, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPlist, err)
	}
	return &r, nil
}

// marshalXML encodes a reply the way usbmuxd writes it.
func marshalXML(v any) ([]byte, error) {
	b, err := plistconn.Marshal(v, plistconn.XML)
	if err != nil {
		return nil, fmt.Errorf("usbmuxd: %w", err)
	}
	return b, nil
}
