package lockdown

import (
	"fmt"

	"github.com/ibackup/ibackup/lockdown/pairrecord"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// Port is lockdownd's device port (usb-usbmux-lockdown.md §5.1).
const Port uint16 = 62078

// TypeLockdown is the QueryType answer of a device in normal mode; a
// device in restore mode answers "com.apple.mobile.restored" (§5.3).
const TypeLockdown = "com.apple.mobile.lockdown"

// ProtocolVersion is sent with Pair, ValidatePair and Unpair (§5.2).
const ProtocolVersion = "2"

// Request is one lockdown request dict (§5.2–5.3). Optional keys are
// omitted when empty; the fake lockdownd decodes requests into it too.
type Request struct {
	Label           string          `plist:"Label,omitempty"`
	Request         string          `plist:"Request"`
	Domain          string          `plist:"Domain,omitempty"`
	Key             string          `plist:"Key,omitempty"`
	Value           any             `plist:"Value,omitempty"`
	HostID          string          `plist:"HostID,omitempty"`
	SystemBUID      string          `plist:"SystemBUID,omitempty"`
	SessionID       string          `plist:"SessionID,omitempty"`
	Service         string          `plist:"Service,omitempty"`
	EscrowBag       []byte          `plist:"EscrowBag,omitempty"`
	PairRecord      *PairRecordMsg  `plist:"PairRecord,omitempty"`
	ProtocolVersion string          `plist:"ProtocolVersion,omitempty"`
	PairingOptions  *PairingOptions `plist:"PairingOptions,omitempty"`
	HostName        string          `plist:"HostName,omitempty"`
}

// PairRecordMsg is the PairRecord dict sent to the device: the host's pair
// record without private keys (§4.2, libimobiledevice-client-needs.md §2.3).
type PairRecordMsg struct {
	DeviceCertificate []byte `plist:"DeviceCertificate,omitempty"`
	HostCertificate   []byte `plist:"HostCertificate,omitempty"`
	RootCertificate   []byte `plist:"RootCertificate,omitempty"`
	SystemBUID        string `plist:"SystemBUID,omitempty"`
	HostID            string `plist:"HostID"`
	EscrowBag         []byte `plist:"EscrowBag,omitempty"`
	WiFiMACAddress    string `plist:"WiFiMACAddress,omitempty"`
}

// PairingOptions is the Pair request's options dict (§5.4 step 4).
type PairingOptions struct {
	ExtendedPairingErrors bool `plist:"ExtendedPairingErrors"`
}

// Response is one lockdown reply dict (§5.2–5.3).
type Response struct {
	Request          string `plist:"Request,omitempty"`
	Error            string `plist:"Error,omitempty"`
	Result           string `plist:"Result,omitempty"`
	Type             string `plist:"Type,omitempty"`
	Domain           string `plist:"Domain,omitempty"`
	Key              string `plist:"Key,omitempty"`
	Value            any    `plist:"Value,omitempty"`
	SessionID        string `plist:"SessionID,omitempty"`
	EnableSessionSSL bool   `plist:"EnableSessionSSL,omitempty"`
	Service          string `plist:"Service,omitempty"`
	Port             uint64 `plist:"Port,omitempty"`
	EnableServiceSSL bool   `plist:"EnableServiceSSL,omitempty"`
	EscrowBag        []byte `plist:"EscrowBag,omitempty"`
}

// pairRecordMsg strips the private keys from a record (§4.2: they are never
// sent; pymobiledevice3 sends RootPrivateKey, we don't). withStored adds
// EscrowBag and WiFiMACAddress, which libimobiledevice sends on
// ValidatePair/Unpair but not on Pair.
func pairRecordMsg(r *pairrecord.Record, withStored bool) *PairRecordMsg {
	m := &PairRecordMsg{
		DeviceCertificate: r.DeviceCertificate,
		HostCertificate:   r.HostCertificate,
		RootCertificate:   r.RootCertificate,
		SystemBUID:        r.SystemBUID,
		HostID:            r.HostID,
	}
	if withStored {
		m.EscrowBag = r.EscrowBag
		m.WiFiMACAddress = r.WiFiMACAddress
	}
	return m
}

// DecodeResponse parses a reply and checks it the way libimobiledevice's
// lockdown_check_result does (libimobiledevice-client-needs.md §2.2): the
// Request echo must match want (skipped when want is ""), Result "Failure"
// is an error even without Error, and an Error string is an *Error.
func DecodeResponse(b []byte, want string) (*Response, error) {
	var r Response
	if err := plistconn.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("lockdown: %w", err)
	}
	if want != "" && r.Request != want {
		if r.Error != "" {
			return &r, &Error{Request: want, Code: r.Error}
		}
		return nil, fmt.Errorf("lockdown: reply to %s echoes Request %q", want, r.Request)
	}
	req := want
	if req == "" {
		req = r.Request
	}
	switch {
	case r.Error != "":
		return &r, &Error{Request: req, Code: r.Error}
	case r.Result != "" && r.Result != "Success":
		return &r, &Error{Request: req, Code: "Failure"}
	}
	return &r, nil
}

// DecodeRequest parses a request dict (used by the fake lockdownd).
func DecodeRequest(b []byte) (*Request, error) {
	var r Request
	if err := plistconn.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("lockdown: %w", err)
	}
	return &r, nil
}
