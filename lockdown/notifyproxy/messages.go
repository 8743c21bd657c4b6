// Package notifyproxy is the host client of the notification_proxy service
// ("com.apple.mobile.notification_proxy"), through which a host posts
// Darwin notifications on the phone and receives the ones it observes.
// The fake device (fakedevice/notifyd) reuses its message codec.
//
// Wire facts: libimobiledevice-client-needs.md §4.3 and §5.2
// (libimobiledevice 1.3.0 src/notification_proxy.c): length-prefixed plists,
// XML from host to device; mobilebackup2-and-backup-format.md §1.1 for the
// names a backup host posts and observes.
package notifyproxy

import (
	"errors"
	"fmt"

	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// ServiceName is the lockdown name of the service.
const ServiceName = "com.apple.mobile.notification_proxy"

// Notification names a backup host uses (§4.3; mobilebackup2 §1.1).
const (
	// Posted by the host around the sync lock.
	SyncWillStart   = "com.apple.itunes-mobdev.syncWillStart"
	SyncLockRequest = "com.apple.itunes-mobdev.syncLockRequest"
	SyncDidStart    = "com.apple.itunes-mobdev.syncDidStart"
	SyncDidFinish   = "com.apple.itunes-mobdev.syncDidFinish"
	// Posted by the phone; observed by the host.
	SyncCancelRequest   = "com.apple.itunes-client.syncCancelRequest"
	SyncSuspendRequest  = "com.apple.itunes-client.syncSuspendRequest"
	SyncResumeRequest   = "com.apple.itunes-client.syncResumeRequest"
	BackupDomainChanged = "com.apple.mobile.backup.domain_changed"
	// iOS 16.1+: the passcode prompt a backup needs was shown / hidden.
	PasscodePromptPresented = "com.apple.LocalAuthentication.ui.presented"
	PasscodePromptDismissed = "com.apple.LocalAuthentication.ui.dismissed"
)

// Command is the Command key of a notification_proxy message.
type Command string

// Commands (§5.2).
const (
	CommandObserve    = Command("ObserveNotification") // host→device, no reply
	CommandPost       = Command("PostNotification")    // host→device, no reply
	CommandShutdown   = Command("Shutdown")            // host→device, answered by ProxyDeath
	CommandRelay      = Command("RelayNotification")   // device→host
	CommandProxyDeath = Command("ProxyDeath")          // device→host, last message
)

// String returns the wire spelling.
func (c Command) String() string { return string(c) }

// needsName reports whether the command carries a notification name.
func (c Command) needsName() bool {
	return c == CommandObserve || c == CommandPost || c == CommandRelay
}

// Message is one notification_proxy plist.
type Message struct {
	Command Command `plist:"Command"`
	Name    string  `plist:"Name,omitempty"`
}

// ErrMalformed reports a message that is not a valid notification_proxy
// plist: not a dict, no Command string, or a name-carrying command without
// a Name.
var ErrMalformed = errors.New("notifyproxy: malformed message")

// DecodeMessage parses one message body (XML or binary plist). Unknown
// commands decode successfully, so callers can skip them.
func DecodeMessage(b []byte) (Message, error) {
	var raw map[string]any
	if err := plistconn.Unmarshal(b, &raw); err != nil {
		return Message{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	cmd, ok := raw["Command"].(string)
	if !ok || cmd == "" {
		return Message{}, fmt.Errorf("%w: no Command", ErrMalformed)
	}
	m := Message{Command: Command(cmd)}
	if name, present := raw["Name"]; present {
		s, ok := name.(string)
		if !ok {
			return Message{}, fmt.Errorf("%w: %s Name is %T", ErrMalformed, cmd, name)
		}
		m.Name = s
	}
	if m.Command.needsName() && m.Name == "" {
		return Message{}, fmt.Errorf("%w: %s without Name", ErrMalformed, cmd)
	}
	return m, nil
}

// Encode returns the message body in format f (hosts send XML, §5.2).
func (m Message) Encode(f plistconn.Format) ([]byte, error) {
	if m.Command == "" || (m.Command.needsName() && m.Name == "") {
		return nil, fmt.Errorf("%w: %q %q", ErrMalformed, m.Command, m.Name)
	}
	b, err := plistconn.Marshal(m, f)
	if err != nil {
		return nil, fmt.Errorf("notifyproxy: %w", err)
	}
	return b, nil
}
