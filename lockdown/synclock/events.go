package synclock

import (
	"errors"
	"fmt"

	"github.com/ibackup/ibackup/lockdown/notifyproxy"
)

// ErrCancelledOnDevice is the cancellation cause of contexts bound to a Lock
// (Lock.Bind) when the user cancels the sync on the phone
// (com.apple.itunes-client.syncCancelRequest; idevicebackup2 prints "User
// has cancelled the backup process on the device." and aborts,
// libimobiledevice-client-needs.md §4.3).
var ErrCancelledOnDevice = errors.New("synclock: the user cancelled the sync on the device")

// ErrLockTimeout is returned by Acquire when the lock stayed busy for every
// attempt ("ERROR: timeout while locking for sync", §4.2 step 9). It wraps
// afc.StatusOpWouldBlock.
var ErrLockTimeout = errors.New("synclock: timeout while locking for sync")

// EventKind classifies a notification relayed while a Lock is held.
type EventKind int

// Event kinds.
const (
	// EventCancelRequest: the user cancelled on the phone. Bound contexts
	// are cancelled with ErrCancelledOnDevice as well.
	EventCancelRequest EventKind = iota + 1
	// EventSuspendRequest / EventResumeRequest: the phone asks to pause or
	// resume the sync (idevicebackup2 only logs them).
	EventSuspendRequest
	EventResumeRequest
	// EventPasscodeRequired: iOS 16.1+ shows the passcode prompt a backup
	// needs; tell the user to enter the passcode on the phone
	// (mobilebackup2-and-backup-format.md §1.1, §8 pitfall 3).
	EventPasscodeRequired
	// EventPasscodeDismissed: the prompt went away.
	EventPasscodeDismissed
	// EventDomainChanged: com.apple.mobile.backup.domain_changed (the
	// backup settings changed on the phone).
	EventDomainChanged
)

// String names the kind.
func (k EventKind) String() string {
	switch k {
	case EventCancelRequest:
		return "cancel-request"
	case EventSuspendRequest:
		return "suspend-request"
	case EventResumeRequest:
		return "resume-request"
	case EventPasscodeRequired:
		return "passcode-required"
	case EventPasscodeDismissed:
		return "passcode-dismissed"
	case EventDomainChanged:
		return "domain-changed"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one relayed notification that matters to a sync.
type Event struct {
	Kind EventKind
	Name string // the notification name as relayed
}

// Hint returns a sentence for the user, or "" when there is nothing to say.
func (e Event) Hint() string {
	switch e.Kind {
	case EventCancelRequest:
		return "The sync was cancelled on the device."
	case EventPasscodeRequired:
		return "Enter the passcode on the device to continue."
	case EventSuspendRequest:
		return "The device asked to pause the sync."
	}
	return ""
}

// observed maps the notifications a syncing host observes to their kinds.
var observed = map[string]EventKind{
	notifyproxy.SyncCancelRequest:       EventCancelRequest,
	notifyproxy.SyncSuspendRequest:      EventSuspendRequest,
	notifyproxy.SyncResumeRequest:       EventResumeRequest,
	notifyproxy.BackupDomainChanged:     EventDomainChanged,
	notifyproxy.PasscodePromptPresented: EventPasscodeRequired,
	notifyproxy.PasscodePromptDismissed: EventPasscodeDismissed,
}

// ObservedNames lists the notifications Acquire observes, in the order it
// sends ObserveNotification: the four idevicebackup2 1.3.0 observes (§4.3)
// and the iOS 16.1+ passcode prompt pair (mobilebackup2 §1.1).
var ObservedNames = []string{
	notifyproxy.SyncCancelRequest,
	notifyproxy.SyncSuspendRequest,
	notifyproxy.SyncResumeRequest,
	notifyproxy.BackupDomainChanged,
	notifyproxy.PasscodePromptPresented,
	notifyproxy.PasscodePromptDismissed,
}
