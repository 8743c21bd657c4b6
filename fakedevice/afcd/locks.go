package afcd

import (
	"sync"

	"github.com/ibackup/ibackup/lockdown/afc"
)

// LockTable holds the FileRefLock state of one phone. Every AFC connection
// of the same phone must share one table, so that two hosts contending for
// /com.apple.itunes.lock_sync see each other (mobilebackup2-and-backup-format.md
// §1.1, libimobiledevice-client-needs.md §4.2 step 9).
//
// Semantics follow flock(2) with LOCK_NB, which is how the device's AFC
// daemon implements the operation: locks belong to an open handle, never
// block, are released by unlock or by closing the handle, and a shared lock
// held by the only holder upgrades to exclusive.
//
// The zero value is not usable; call NewLockTable. A LockTable is safe for
// concurrent use.
type LockTable struct {
	mu    sync.Mutex
	locks map[string]*fileLock // key: cleaned AFC path
}

type fileLock struct {
	exclusive any              // holder of the exclusive lock, or nil
	shared    map[any]struct{} // holders of shared locks
}

// NewLockTable returns an empty table.
func NewLockTable() *LockTable {
	return &LockTable{locks: make(map[string]*fileLock)}
}

// Apply performs op for holder (an open handle's identity) on path and
// returns the AFC status to send: success, StatusOpWouldBlock when another
// holder conflicts, or StatusInvalidArg for an unknown operation.
func (t *LockTable) Apply(path string, holder any, op afc.LockOp) afc.Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.locks[path]
	if l == nil {
		l = &fileLock{shared: make(map[any]struct{})}
	}
	switch op {
	case afc.LockUnlock:
		if l.exclusive == holder {
			l.exclusive = nil
		}
		delete(l.shared, holder)
	case afc.LockExclusive:
		if l.exclusive != nil && l.exclusive != holder {
			return afc.StatusOpWouldBlock
		}
		for h := range l.shared {
			if h != holder {
				return afc.StatusOpWouldBlock
			}
		}
		delete(l.shared, holder)
		l.exclusive = holder
	case afc.LockShared:
		if l.exclusive != nil && l.exclusive != holder {
			return afc.StatusOpWouldBlock
		}
		if l.exclusive == holder {
			l.exclusive = nil // downgrade
		}
		l.shared[holder] = struct{}{}
	default:
		return afc.StatusInvalidArg
	}
	if l.exclusive == nil && len(l.shared) == 0 {
		delete(t.locks, path)
	} else {
		t.locks[path] = l
	}
	return afc.StatusSuccess
}

// Release drops every lock holder has on path (closing a handle).
func (t *LockTable) Release(path string, holder any) {
	t.Apply(path, holder, afc.LockUnlock)
}

// Held reports whether any handle holds a lock on path (for tests and the
// fake phone's status display).
func (t *LockTable) Held(path string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.locks[path]
	return ok
}
