package synclock

import "context"

// Events returns the channel of sync events relayed by the phone while the
// lock is held (and during Acquire). Servicing contract: the channel has
// Options.EventBuffer slots and is written only by the Lock's watcher
// goroutine, which never blocks on it — when the buffer is full, the event
// is dropped and counted (Dropped). A cancel request is never lost that
// way: it also closes Cancelled and cancels every bound context. The
// channel is closed when the watcher ends: at Release, after a failed
// Acquire, or when the notification client's channel closes.
func (l *Lock) Events() <-chan Event { return l.events }

// Dropped returns how many events found Events full and were discarded.
func (l *Lock) Dropped() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped
}

// Cancelled is closed when the phone relays syncCancelRequest.
func (l *Lock) Cancelled() <-chan struct{} { return l.cancelled }

// Bind returns a context derived from parent that is also cancelled, with
// cause ErrCancelledOnDevice, when the user cancels the sync on the phone —
// wrap the backup or restore in it. The CancelFunc releases the binding and
// must be called (like context.WithCancel's).
func (l *Lock) Bind(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	l.mu.Lock()
	if l.isCancel {
		l.mu.Unlock()
		cancel(ErrCancelledOnDevice)
		return ctx, func() {}
	}
	id := l.nextBind
	l.nextBind++
	l.binds[id] = cancel
	l.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		l.mu.Lock()
		delete(l.binds, id)
		l.mu.Unlock()
	})
	return ctx, func() {
		cancel(context.Canceled)
		stop()
		l.mu.Lock()
		delete(l.binds, id)
		l.mu.Unlock()
	}
}

// watch is the watcher goroutine: it owns reading notes and writing
// events, and ends when stopWatch closes or notes closes.
func (l *Lock) watch(notes <-chan string) {
	defer close(l.watcherDone)
	defer close(l.events)
	for {
		select {
		case <-l.stopWatch:
			return
		case name, ok := <-notes:
			if !ok {
				return
			}
			kind, known := observed[name]
			if !known {
				continue
			}
			if kind == EventCancelRequest {
				l.cancelOnDevice()
			}
			select {
			case l.events <- Event{Kind: kind, Name: name}:
			default:
				l.mu.Lock()
				l.dropped++
				l.mu.Unlock()
			}
		}
	}
}

func (l *Lock) cancelOnDevice() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isCancel {
		return
	}
	l.isCancel = true
	close(l.cancelled)
	for id, cancel := range l.binds {
		cancel(ErrCancelledOnDevice)
		delete(l.binds, id)
	}
}
