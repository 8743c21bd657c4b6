package fakedevice

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/ibackup/ibackup/fakedevice/phone"
	"github.com/ibackup/ibackup/usbmux"
)

// FarmOptions configure a Farm.
type FarmOptions struct {
	// Interval is how often the directory is scanned (default 1 s).
	Interval time.Duration
	// Device options are used for every phone.
	Device Options
	// Logger receives debug and warning messages; nil discards.
	Logger *slog.Logger
}

// Farm serves every simulated phone stored in a directory: each phone is
// plugged in over its own in-memory link with our host mux on top, phones
// added to the directory are attached and removed ones detached. A phone
// whose link dies (for example with link-drop-after) is detached and
// plugged in again at once, like a flaky cable.
type Farm struct {
	dir  string
	opts FarmOptions
	log  *slog.Logger
}

// Attached is a phone the farm plugged in.
type Attached struct {
	UDID   string
	Device *Device
	// Mux is the host side of the phone's link; Dial it to reach a port.
	Mux *usbmux.Mux
}

// NewFarm returns a farm for the phones in dir.
func NewFarm(dir string, opts FarmOptions) *Farm {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Farm{dir: dir, opts: opts, log: log}
}

// Run scans the directory until ctx ends, calling attach for every phone
// plugged in and detach (with the same value) when it goes away. The
// callbacks run on Run's goroutine and must not block for long. When ctx
// ends every phone is detached and unplugged before Run returns ctx's
// error.
//
// A phone whose link dies is detached at once, not at the next scan: a
// real usbmuxd sees the USB disconnect immediately, and until the detach
// clients get the dead phone listed and their Connect refused. One
// goroutine per plugged phone waits for its mux to end; Run waits for all
// of them before returning.
func (f *Farm) Run(ctx context.Context, attach, detach func(*Attached)) error {
	live := map[string]*Attached{}
	died := make(chan struct{}, 1)
	var watchers sync.WaitGroup
	defer watchers.Wait()
	plugged := func(a *Attached) {
		attach(a)
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			<-a.Mux.Done() // also closed by unplug's Mux.Close
			select {
			case died <- struct{}{}:
			default:
			}
		}()
	}
	unplug := func(a *Attached) {
		detach(a)
		_ = a.Mux.Close()
		_ = a.Device.Close()
		delete(live, a.UDID)
	}
	t := time.NewTicker(f.opts.Interval)
	defer t.Stop()
	for {
		f.scan(ctx, live, plugged, unplug)
		select {
		case <-ctx.Done():
			for _, a := range live {
				unplug(a)
			}
			return ctx.Err()
		case <-t.C:
		case <-died:
		}
	}
}

// scan attaches new phones and detaches gone or dead ones.
func (f *Farm) scan(ctx context.Context, live map[string]*Attached, attach func(*Attached), unplug func(*Attached)) {
	ps, err := phone.List(f.dir)
	if err != nil {
		f.log.Warn("fakedevice: scanning phones", "dir", f.dir, "err", err)
		return
	}
	present := map[string]bool{}
	for _, p := range ps {
		present[p.UDID()] = true
	}
	for udid, a := range live {
		dead := false
		select {
		case <-a.Mux.Done():
			dead = true
		default:
		}
		if !present[udid] || dead {
			f.log.Debug("fakedevice: detaching", "udid", udid, "removed", !present[udid])
			unplug(a)
		}
	}
	for _, p := range ps {
		if _, ok := live[p.UDID()]; ok {
			continue
		}
		a, err := f.plug(ctx, p)
		if err != nil {
			f.log.Warn("fakedevice: cannot serve phone", "udid", p.UDID(), "err", err)
			continue
		}
		live[a.UDID] = a
		attach(a)
	}
}

// plug opens one phone and runs the host mux on its link.
func (f *Farm) plug(ctx context.Context, p *phone.Phone) (*Attached, error) {
	d, err := Open(filepath.Join(f.dir, filepath.Base(p.Dir)), f.opts.Device)
	if err != nil {
		return nil, err
	}
	l, err := d.Connect(ctx)
	if err != nil {
		_ = d.Close()
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := usbmux.NewMux(hctx, l, &usbmux.Options{Logger: f.log})
	if err != nil {
		_ = d.Close()
		return nil, err
	}
	return &Attached{UDID: d.UDID(), Device: d, Mux: m}, nil
}
