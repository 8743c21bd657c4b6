// Package synclock takes and releases the phone's sync lock around a backup
// or restore, as idevicebackup2 and pymobiledevice3 do, and surfaces what
// the phone says meanwhile (cancel, suspend/resume, the iOS 16.1+ passcode
// prompt).
//
// The procedure (libimobiledevice-client-needs.md §4.2 steps 9 and 12,
// mobilebackup2-and-backup-format.md §1.1):
//
//	post syncWillStart; AFC open /com.apple.itunes.lock_sync "r+";
//	post syncLockRequest; FileRefLock exclusive, up to 50 tries 200 ms
//	apart while the device answers "would block"; post syncDidStart.
//	Release: unlock, close, post syncDidFinish.
//
// The package takes already started AFC and notification_proxy clients and
// never dials.
package synclock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ibackup/ibackup/lockdown/afc"
	"github.com/ibackup/ibackup/lockdown/notifyproxy"
)

// LockPath is the AFC file whose exclusive lock is the sync lock.
const LockPath = "/com.apple.itunes.lock_sync"

// Defaults of idevicebackup2 (LOCK_ATTEMPTS, LOCK_WAIT; §2.7).
const (
	DefaultAttempts = 50
	DefaultInterval = 200 * time.Millisecond
	// DefaultCleanupTimeout bounds the unlock/close/syncDidFinish steps run
	// after the caller's context has ended.
	DefaultCleanupTimeout = 10 * time.Second
	// DefaultEventBuffer is the capacity of Lock.Events.
	DefaultEventBuffer = 16
)

// Options tunes Acquire. Zero fields take the defaults.
type Options struct {
	Attempts       int
	Interval       time.Duration // between lock attempts; tests make it small
	CleanupTimeout time.Duration
	EventBuffer    int
	// Post posts a notification. The default posts on the notification
	// client given to Acquire; idevicebackup2 instead posts each on a fresh
	// notification_proxy connection, which a caller can do here.
	Post func(ctx context.Context, name string) error
}

// Lock is a held sync lock. Its watcher goroutine reads the notification
// client's Notifications channel from Acquire until Release (or until that
// channel closes); nobody else may read it meanwhile.
type Lock struct {
	// file and locked are set by Acquire's goroutine and read by finish,
	// which runs after Acquire (failure path) or in Release.
	file    *afc.File
	locked  bool // the exclusive lock was granted
	post    func(ctx context.Context, name string) error
	cleanup time.Duration

	events      chan Event    // written only by the watcher; closed when it ends
	stopWatch   chan struct{} // closed by Release/abort
	watcherDone chan struct{}
	cancelled   chan struct{} // closed on the first syncCancelRequest

	mu       sync.Mutex
	binds    map[uint64]context.CancelCauseFunc
	nextBind uint64
	isCancel bool
	released bool
	dropped  int
}

// Acquire takes the sync lock with the default Options.
func Acquire(ctx context.Context, a *afc.Client, np *notifyproxy.Client) (*Lock, error) {
	return AcquireWithOptions(ctx, a, np, Options{})
}

// AcquireWithOptions discards notifications already waiting on np,
// observes the sync notifications, then runs the lock procedure. On failure
// — busy lock (ErrLockTimeout), cancel on the phone (ErrCancelledOnDevice),
// ctx, or a device error — it closes the lock file and posts syncDidFinish
// before returning, so the phone never stays in "sync starting".
func AcquireWithOptions(ctx context.Context, a *afc.Client, np *notifyproxy.Client, opts Options) (*Lock, error) {
	if opts.Attempts <= 0 {
		opts.Attempts = DefaultAttempts
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.CleanupTimeout <= 0 {
		opts.CleanupTimeout = DefaultCleanupTimeout
	}
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = DefaultEventBuffer
	}
	if opts.Post == nil {
		opts.Post = np.Post
	}
	// Relays queued before this sync began (e.g. a cancel meant for an
	// earlier sync on the same connection) must not end this one.
	drain(np.Notifications())
	if err := np.Observe(ctx, ObservedNames...); err != nil {
		return nil, fmt.Errorf("synclock: %w", err)
	}
	l := &Lock{
		post:        opts.Post,
		cleanup:     opts.CleanupTimeout,
		events:      make(chan Event, opts.EventBuffer),
		stopWatch:   make(chan struct{}),
		watcherDone: make(chan struct{}),
		cancelled:   make(chan struct{}),
		binds:       make(map[uint64]context.CancelCauseFunc),
	}
	go l.watch(np.Notifications())

	// Device cancels abort the acquisition too.
	actx, cancel := l.Bind(ctx)
	defer cancel()
	if err := l.acquire(actx, ctx, a, opts); err != nil {
		if cause := context.Cause(actx); errors.Is(cause, ErrCancelledOnDevice) && !errors.Is(err, ErrCancelledOnDevice) {
			err = fmt.Errorf("%w (%w)", ErrCancelledOnDevice, err)
		}
		return nil, errors.Join(err, l.finish(ctx))
	}
	return l, nil
}

// acquire runs the procedure. Requests use reqCtx (the caller's context);
// ctx additionally ends on a cancel from the phone and only bounds the waits
// between lock attempts, so a phone cancel never interrupts an AFC request
// mid-flight (which would leave the AFC client unusable for the cleanup).
func (l *Lock) acquire(ctx, reqCtx context.Context, a *afc.Client, opts Options) error {
	if err := l.post(reqCtx, notifyproxy.SyncWillStart); err != nil {
		return fmt.Errorf("synclock: post syncWillStart: %w", err)
	}
	f, err := a.Open(reqCtx, LockPath, afc.ModeRW)
	if err != nil {
		return fmt.Errorf("synclock: open lock file: %w", err)
	}
	l.file = f
	if err := l.post(reqCtx, notifyproxy.SyncLockRequest); err != nil {
		return fmt.Errorf("synclock: post syncLockRequest: %w", err)
	}
	if err := l.lockRetry(ctx, reqCtx, opts); err != nil {
		return err
	}
	l.locked = true
	if err := context.Cause(ctx); errors.Is(err, ErrCancelledOnDevice) {
		return err // cancelled on the phone during the last attempt
	}
	if err := l.post(reqCtx, notifyproxy.SyncDidStart); err != nil {
		// The lock is held: finish unlocks it.
		return fmt.Errorf("synclock: post syncDidStart: %w", err)
	}
	return nil
}

// Release unlocks and closes the lock file and posts syncDidFinish, trying
// every step even when an earlier one fails or ctx has already ended (then
// under a fresh CleanupTimeout context), and stops the watcher. Later and
// concurrent calls return nil at once. When the AFC client is already
// unusable (an interrupted request), unlock and close fail and are reported;
// the device drops the lock when that AFC connection is closed, so close it.
func (l *Lock) Release(ctx context.Context) error {
	l.mu.Lock()
	done := l.released
	l.released = true
	l.mu.Unlock()
	if done {
		return nil
	}
	return l.finish(ctx)
}

// finish is the shared cleanup of Release and failed acquisitions.
// It runs once per Lock (Release's released flag, or the failed Acquire).
func (l *Lock) finish(ctx context.Context) error {
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), l.cleanup)
		defer cancel()
	}
	var errs []error
	if l.file != nil {
		if l.locked {
			if err := l.file.Lock(ctx, afc.LockUnlock); err != nil {
				errs = append(errs, fmt.Errorf("synclock: unlock: %w", err))
			}
		}
		if err := l.file.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("synclock: close lock file: %w", err))
		}
	}
	if err := l.post(ctx, notifyproxy.SyncDidFinish); err != nil {
		errs = append(errs, fmt.Errorf("synclock: post syncDidFinish: %w", err))
	}
	close(l.stopWatch)
	<-l.watcherDone
	return errors.Join(errs...)
}

// lockRetry tries the exclusive lock up to opts.Attempts times, waiting
// opts.Interval between tries while the device answers "would block"
// (§4.2 step 9). Any other status ends it at once.
func (l *Lock) lockRetry(ctx, reqCtx context.Context, opts Options) error {
	var err error
	for i := range opts.Attempts {
		if i > 0 {
			t := time.NewTimer(opts.Interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("synclock: waiting for the lock: %w", context.Cause(ctx))
			case <-t.C:
			}
		}
		err = l.file.Lock(reqCtx, afc.LockExclusive)
		if err == nil {
			return nil
		}
		if !errors.Is(err, afc.StatusOpWouldBlock) {
			return fmt.Errorf("synclock: could not lock file: %w", err)
		}
	}
	return fmt.Errorf("%w after %d attempts: %w", ErrLockTimeout, opts.Attempts, err)
}

// drain discards what is buffered on notes without waiting.
func drain(notes <-chan string) {
	for {
		select {
		case _, ok := <-notes:
			if !ok {
				return
			}
		default:
			return
		}
	}
}
