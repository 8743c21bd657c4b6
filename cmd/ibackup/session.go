package main

import (
	"context"
	"time"

	"github.com/ibackup/ibackup/lockdown"
	"github.com/ibackup/ibackup/lockdown/afc"
	"github.com/ibackup/ibackup/lockdown/instproxy"
	"github.com/ibackup/ibackup/lockdown/notifyproxy"
	"github.com/ibackup/ibackup/lockdown/synclock"
	"github.com/ibackup/ibackup/mobilebackup2"
)

// Service names used around a backup or restore
// (mobilebackup2-and-backup-format.md §1.1, libimobiledevice-client-needs.md §4).
const (
	afcService          = "com.apple.afc"
	notificationService = "com.apple.mobile.notification_proxy"
	installationService = "com.apple.mobile.installation_proxy"
)

// syncSession is the sync lock held around a backup or restore, with the
// AFC and notification_proxy connections it needs.
type syncSession struct {
	afc  *afc.Client
	np   *notifyproxy.Client
	lock *synclock.Lock
}

// startSync takes the phone's sync lock the way iTunes and idevicebackup2
// do (syncWillStart, lock /com.apple.itunes.lock_sync, syncDidStart).
func startSync(ctx context.Context, t *target, cl *lockdown.Client) (*syncSession, error) {
	nc, err := cl.StartService(ctx, t.Dialer, notificationService, false)
	if err != nil {
		return nil, err
	}
	np := notifyproxy.NewClient(nc, nil)
	ac, err := cl.StartService(ctx, t.Dialer, afcService, false)
	if err != nil {
		np.Close()
		return nil, err
	}
	a := afc.NewClient(ac)
	// A short cleanup keeps Ctrl-C responsive when the phone stopped answering.
	lock, err := synclock.AcquireWithOptions(ctx, a, np, synclock.Options{CleanupTimeout: 3 * time.Second})
	if err != nil {
		a.Close()
		np.Close()
		return nil, err
	}
	return &syncSession{afc: a, np: np, lock: lock}, nil
}

// releaseTimeout bounds unlocking when the phone stopped answering.
const releaseTimeout = 5 * time.Second

// close releases the lock and the connections. With ctx already ended
// (Ctrl-C) synclock still runs its bounded cleanup; a phone that stopped
// answering cannot hold us longer than releaseTimeout.
func (s *syncSession) close(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, releaseTimeout)
	defer cancel()
	err := s.lock.Release(rctx)
	s.afc.Close()
	s.np.Close()
	return err
}

// watchEvents prints the phone's sync events (passcode prompt, cancel) until
// the lock's event channel closes.
func (s *syncSession) watchEvents(e *env, pr *progress) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range s.lock.Events() {
			if pr.json != nil {
				pr.emit(map[string]any{"event": "phone", "kind": ev.Kind.String(), "name": ev.Name})
				continue
			}
			if h := ev.Hint(); h != "" {
				pr.note("phone: %s\n", h)
			}
		}
	}()
	return done
}

// userApps lists the user apps for Info.plist through installation_proxy
// (client-needs §4.4). A phone without the service gives no apps.
func userApps(ctx context.Context, t *target, cl *lockdown.Client) ([]mobilebackup2.App, error) {
	conn, err := cl.StartService(ctx, t.Dialer, installationService, false)
	if err != nil {
		return nil, err
	}
	ip := instproxy.NewClient(conn)
	defer ip.Close()
	apps, err := ip.BrowseAll(ctx, instproxy.BrowseOptions{
		ApplicationType:  "User",
		ReturnAttributes: []string{"CFBundleIdentifier", "ApplicationSINF", "iTunesMetadata"},
	})
	if err != nil {
		return nil, err
	}
	var out []mobilebackup2.App
	for _, a := range apps {
		sinf, _ := a.Data("ApplicationSINF")
		meta, _ := a.Data("iTunesMetadata")
		out = append(out, mobilebackup2.App{BundleID: a.BundleID(), SINF: sinf, ITunesMetadata: meta})
	}
	return out, nil
}
