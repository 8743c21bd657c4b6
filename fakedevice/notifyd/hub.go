// Package notifyd is the fake phone's notification_proxy service
// ("com.apple.mobile.notification_proxy"), built on the host client's
// message codec (lockdown/notifyproxy).
//
// One Hub stands for one phone's notification center: host connections
// register observations with it, posts from a host connection reach every
// observing connection of the same phone (as Darwin notify does), and the
// phone itself (a test, or fakedevice/phone) posts through Hub.Post — e.g.
// syncCancelRequest when "the user taps Cancel", or the iOS 16.1+ passcode
// prompt. Wire facts: libimobiledevice-client-needs.md §4.3, §5.2 and §6
// item 10 (answer Shutdown with ProxyDeath).
package notifyd

import (
	"context"
	"slices"
	"sync"

	"github.com/ibackup/ibackup/lockdown/notifyproxy"
)

// Hub is one phone's notification center. It is safe for concurrent use.
type Hub struct {
	mu        sync.Mutex
	conns     map[*hostConn]struct{}
	hostPosts []string      // names posted by hosts, in order
	changed   chan struct{} // closed and replaced on every change, for waiters
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{conns: make(map[*hostConn]struct{}), changed: make(chan struct{})}
}

// notifyLocked wakes every waiter; h.mu must be held.
func (h *Hub) notifyLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// Post posts name on the phone: every host connection observing name
// gets a RelayNotification. It returns how many connections it reached.
func (h *Hub) Post(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for hc := range h.conns {
		if hc.enqueueIfObserving(name) {
			n++
		}
	}
	return n
}

// hostPost records a post from a host and relays it like a phone post.
func (h *Hub) hostPost(name string) {
	h.Post(name)
	h.mu.Lock()
	h.hostPosts = append(h.hostPosts, name)
	h.notifyLocked()
	h.mu.Unlock()
}

// HostPosts returns the names hosts have posted, in order.
func (h *Hub) HostPosts() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.hostPosts)
}

// Observers returns how many host connections currently observe name.
func (h *Hub) Observers(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.observersLocked(name)
}

func (h *Hub) observersLocked(name string) int {
	n := 0
	for hc := range h.conns {
		if hc.observes(name) {
			n++
		}
	}
	return n
}

// WaitHostPost waits until a host has posted name (at any time since the
// hub was made) or ctx ends.
func (h *Hub) WaitHostPost(ctx context.Context, name string) error {
	return h.wait(ctx, func() bool { return slices.Contains(h.hostPosts, name) })
}

// WaitObserved waits until at least one host connection observes name, so
// a test can post it knowing it will be relayed.
func (h *Hub) WaitObserved(ctx context.Context, name string) error {
	return h.wait(ctx, func() bool { return h.observersLocked(name) > 0 })
}

func (h *Hub) wait(ctx context.Context, cond func() bool) error {
	for {
		h.mu.Lock()
		ok, ch := cond(), h.changed
		h.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

func (h *Hub) add(hc *hostConn) {
	h.mu.Lock()
	h.conns[hc] = struct{}{}
	h.notifyLocked()
	h.mu.Unlock()
}

func (h *Hub) remove(hc *hostConn) {
	h.mu.Lock()
	delete(h.conns, hc)
	h.notifyLocked()
	h.mu.Unlock()
}

func (h *Hub) observe(hc *hostConn, name string) {
	h.mu.Lock()
	hc.addObservation(name)
	h.notifyLocked()
	h.mu.Unlock()
}

// CancelSync posts syncCancelRequest, as when the user taps Cancel on the
// phone's "Syncing" banner (libimobiledevice-client-needs.md §4.3).
func (h *Hub) CancelSync() int { return h.Post(notifyproxy.SyncCancelRequest) }

// ShowPasscodePrompt posts com.apple.LocalAuthentication.ui.presented: iOS
// 16.1+ asks for the passcode before a backup starts
// (mobilebackup2-and-backup-format.md §1.1).
func (h *Hub) ShowPasscodePrompt() int { return h.Post(notifyproxy.PasscodePromptPresented) }

// DismissPasscodePrompt posts com.apple.LocalAuthentication.ui.dismissed.
func (h *Hub) DismissPasscodePrompt() int { return h.Post(notifyproxy.PasscodePromptDismissed) }
