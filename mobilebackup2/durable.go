package mobilebackup2

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
)

// durableEvery is how much received data starts a background syncfs pass
// (Linux): the data written meanwhile is flushed by the kernel's writeback
// threads while the phone keeps sending, so the final pass before the
// commit has little left to write (issue 11, "rate").
const durableEvery = 64 << 20

// durability makes the working copy durable before the new version is
// committed (the snapshot package's commit rename must only ever expose
// durable data). Issue 11 replaced the per-file fsync of the receive loop,
// which stalled reading from the phone, by syncfs(2) of the file system
// holding the working copy: in the background every durableEvery bytes
// and once at the end (finish). Where syncfs is missing, finish fsyncs
// every regular file and directory of the working copy instead.
//
// Its methods run on the engine's goroutine; at most one background pass
// runs at a time.
type durability struct {
	root    *os.Root
	dir     *os.File // the working root, opened before any file is written
	pending int64    // bytes written since the last pass started
	busy    bool     // a background pass runs and will send on done
	done    chan error
	err     error // the first failure of a background pass
}

// newDurability opens the working root for syncfs. The descriptor is
// opened before the first received byte, so every write-back error of the
// run is reported to it (Linux reports a file system's errors to each open
// file once).
func newDurability(root *os.Root) (*durability, error) {
	d := &durability{root: root, done: make(chan error, 1)}
	f, err := root.Open(".")
	if err != nil {
		return nil, fmt.Errorf("mobilebackup2: %w", err)
	}
	d.dir = f
	return d, nil
}

// wrote notes n bytes written and starts a background pass when enough
// has accumulated and none is running.
func (d *durability) wrote(n int64) {
	if d == nil || !haveSyncFS {
		return
	}
	d.pending += n
	if d.busy {
		select {
		case err := <-d.done:
			d.busy = false
			d.keep(err)
		default:
			return
		}
	}
	if d.pending < durableEvery {
		return
	}
	d.pending, d.busy = 0, true
	go func() { d.done <- syncFS(d.dir) }()
}

func (d *durability) keep(err error) {
	if err != nil && d.err == nil {
		d.err = err
	}
}

// wait waits for a running background pass.
func (d *durability) wait() {
	if d.busy {
		d.keep(<-d.done)
		d.busy = false
	}
}

// finish makes everything written so far durable. It may run on another
// goroutine than wrote, once the engine is done writing.
func (d *durability) finish() error {
	d.wait()
	if d.err != nil {
		return d.err
	}
	if err := syncFS(d.dir); !errors.Is(err, errNoSyncFS) {
		return err
	}
	return syncEach(d.root)
}

// close waits for a background pass and releases the descriptor.
func (d *durability) close() {
	if d == nil {
		return
	}
	d.wait()
	d.dir.Close()
}

// errNoSyncFS reports that the platform has no syncfs(2).
var errNoSyncFS = errors.New("mobilebackup2: syncfs not available")

// syncEach fsyncs every regular file and directory below root: fsync of a
// directory makes its entries durable, fsync of a file its data. A file
// that vanishes meanwhile (the verifier renames its own record file, which
// it syncs itself) is skipped.
func syncEach(root *os.Root) error {
	return fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("mobilebackup2: sync %s: %w", p, err)
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		return syncOne(root, path.Clean(p))
	})
}

func syncOne(root *os.Root, name string) error {
	f, err := root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mobilebackup2: sync: %w", err)
	}
	serr := f.Sync()
	if cerr := f.Close(); serr == nil {
		serr = cerr
	}
	if serr != nil {
		return fmt.Errorf("mobilebackup2: sync %s: %w", name, serr)
	}
	return nil
}
