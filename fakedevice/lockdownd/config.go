// Package lockdownd is the phone side of lockdown (device port 62078) for
// the simulated device: identity values and domains, pairing with a
// simulated Trust prompt and passcode lock, TLS sessions with the device
// certificate from pairing, and StartService handing out ports for the
// services that are implemented. It behaves as usb-usbmux-lockdown.md §7
// describes and satisfies libimobiledevice 1.3.0's tools
// (libimobiledevice-client-needs.md §2–§3, §6).
package lockdownd

import (
	"context"
	"crypto/rsa"
	"log/slog"
	"net"
	"time"
)

// PortListener opens device ports for services; a *devmux.Server satisfies it.
type PortListener interface {
	Listen(port uint16) (net.Listener, error)
}

// Service is a device service StartService can start.
type Service struct {
	// Name is the lockdown service name, e.g. "com.apple.afc".
	Name string
	// SSL makes StartService answer EnableServiceSSL and wrap the
	// connection in TLS before Serve sees it (§7.3: per-service knob).
	SSL bool
	// EscrowBag marks services that need the escrow bag
	// (com.apple.mobilebackup2): while the device is locked they are refused
	// with PasswordProtected unless the request carries the bag.
	EscrowBag bool
	// Serve handles one connection; the conn is closed when it returns.
	Serve func(ctx context.Context, conn net.Conn) error
}

// TrustMode is the simulated user's answer to "Trust this computer?".
type TrustMode int

const (
	// TrustAccept accepts (after TrustPolicy.Delay, if any).
	TrustAccept TrustMode = iota
	// TrustDeny taps "Don't Trust": Pair fails with UserDeniedPairing.
	TrustDeny
	// TrustNever leaves the dialog up forever (PairingDialogResponsePending).
	TrustNever
)

// String names the mode.
func (m TrustMode) String() string {
	switch m {
	case TrustAccept:
		return "accept"
	case TrustDeny:
		return "deny"
	case TrustNever:
		return "never"
	}
	return "TrustMode(?)"
}

// TrustPolicy simulates the Trust dialog (§7.2). With Delay > 0 the first
// Pair request opens the dialog and every Pair before Delay has passed (on
// Config.Now's clock) is answered PairingDialogResponsePending.
type TrustPolicy struct {
	Mode  TrustMode
	Delay time.Duration
}

// Config describes one simulated device's lockdownd.
type Config struct {
	// Values are the root-domain identity values (§7.5), e.g. from
	// ExampleValues. DevicePublicKey, PasswordProtected and
	// TrustedHostAttached are filled in by lockdownd.
	Values map[string]any
	// Domains are the other value domains, e.g. "com.apple.mobile.backup":
	// {"WillEncrypt": false}.
	Domains map[string]map[string]any
	// LiveValues, when set, returns values of a non-root domain that other
	// parts of the phone change while it runs, e.g. the backup service's
	// com.apple.mobile.backup WillEncrypt after ChangePassword
	// (mobilebackup2-and-backup-format.md §6.5). They override Domains on
	// every GetValue. It is called without lockdownd's locks held; nil or a
	// nil map means no live values for the domain.
	LiveValues func(domain string) map[string]any
	// StatePath is the plist file lockdownd owns (device key pair, paired
	// hosts, escrow bag), written with mode 0600; "" keeps state in memory.
	StatePath string
	// DeviceKey is used when the state has no device key yet (tests share
	// keys to save RSA generation time); nil generates one.
	DeviceKey *rsa.PrivateKey
	// Services are the services StartService may start.
	Services []Service
	// Listener opens service ports. Without it StartService fails.
	Listener PortListener
	// FirstServicePort is the first port handed out (default 49152).
	FirstServicePort uint16

	// Trust is the simulated user's answer to the Trust dialog.
	Trust TrustPolicy
	// Locked simulates a passcode-locked screen: Pair → PasswordProtected,
	// PasswordProtected value true, escrow services without the bag refused.
	Locked bool
	// NotUnlockedSinceBoot makes StartService with an EscrowBag answer
	// MissingValue (libimobiledevice#1078, §7.6).
	NotUnlockedSinceBoot bool
	// WrongCert makes the device present a certificate other than the
	// DeviceCertificate of the pair record (a hosts' check must refuse it).
	WrongCert bool
	// ServiceErrors forces StartService for a service name to fail with the
	// given lockdown error string (e.g. "ServiceLimit").
	ServiceErrors map[string]string

	// Switches for facts tagged [I]/[U] in usb-usbmux-lockdown.md:

	// LegacyTLS serves TLS 1.0 only with RSA key exchange, like an old
	// iOS (< 10) talking to libimobiledevice (§5.5, pitfall 19) [I].
	LegacyTLS bool
	// AcceptAnyClientCert skips the check that the TLS client certificate is
	// the pair record's HostCertificate or RootCertificate (§7.3) [I].
	AcceptAnyClientCert bool
	// AcceptForeignDeviceCert skips the Pair check that DeviceCertificate
	// certifies the device's own key (§7.3, open question 5) [I].
	AcceptForeignDeviceCert bool
	// UnpairedKeys overrides the root keys readable without a session
	// (§7.4) [U]; nil uses DefaultUnpairedKeys.
	UnpairedKeys []string
	// OpenValues serves every value without a session (the strictest
	// device behaviour is unknown, §7.3 GetValue row) [U].
	OpenValues bool
	// UnpairEchoesValidatePair answers Unpair with Request "ValidatePair"
	// as some firmware does (pitfall 24).
	UnpairEchoesValidatePair bool

	// OnPaired and OnUnpaired, if set, are called after a host was paired
	// or unpaired (e.g. to post com.apple.mobile.lockdown.request_pair on
	// notification_proxy, §7.3). They run on the lockdown connection's
	// goroutine and must not call back into the Server.
	OnPaired   func(hostID string)
	OnUnpaired func(hostID string)

	// Now is the clock for the trust delay; nil = time.Now.
	Now func() time.Time
	// Logger receives debug messages (never key material); nil discards.
	Logger *slog.Logger
}

// DefaultUnpairedKeys are the root values readable without a session
// (§7.4: what hosts read before pairing, plus the [U] extras).
var DefaultUnpairedKeys = []string{
	"DevicePublicKey", "UniqueDeviceID", "UniqueChipID", "ProductType", "ProductVersion",
	"DeviceClass", "WiFiAddress", "DeviceName", "BuildVersion", "ProductName", "HardwareModel",
	"CPUArchitecture", "ChipID", "BoardId", "ProtocolVersion", "TimeIntervalSince1970",
	"TimeZone", "TimeZoneOffsetFromUTC", "Uses24HourClock", "ActivationState",
	"PasswordProtected", "SerialNumber",
}

// unpairedDomains are domains readable without a session (§5.7:
// com.apple.mobile.iTunes is readable unpaired, libimobiledevice#1199).
var unpairedDomains = map[string]bool{"com.apple.mobile.iTunes": true}
