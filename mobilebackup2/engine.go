package mobilebackup2

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/ibackup/ibackup/mobilebackup2/devicelink"
)

// finalResult is the phone's closing DLMessageProcessMessage (§2.5).
type finalResult struct {
	code        int64
	description string
	content     string
}

// engine answers the phone's DeviceLink requests against one backup root
// (§2.3). It runs on the caller's goroutine; all fields belong to it.
type engine struct {
	dl       *devicelink.Conn
	stalled  func(error) error // Client.stalled; nil in engines without a Client
	root     *os.Root
	rootDir  string
	fc       *dirCache // open parent directories of content files (files())
	q        quota
	hash     bool
	sha      hash.Hash   // reused for every received file
	sink     fileSink    // reused for every received file
	dur      *durability // nil: received files are not made durable
	log      *slog.Logger
	progress func(Event)

	// readOnly lists top-level names the phone may read but never change
	// (the backup being restored, §7).
	readOnly map[string]bool

	// dirs caches directories known to exist (CreateDirectory arrives 514
	// times per backup, §4.3 steps 5–6); removes and moves invalidate it.
	dirs map[string]bool

	ev         Event
	received   *recvTable    // slash paths relative to root
	remoteErrs []FileProblem // files the phone could not read (ERROR_REMOTE)
	diskFull   bool
	lastWrite  error
	sent       int   // files served to the phone
	sentBytes  int64 // bytes served to the phone
}

// files returns the engine's cache of open directories.
func (e *engine) files() *dirCache {
	if e.fc == nil {
		e.fc = newDirCache(e.root)
	}
	return e.fc
}

// dirsChanged is called before a directory may be removed, moved or
// replaced: cached open directories may no longer be what their paths name.
func (e *engine) dirsChanged() {
	if e.fc != nil {
		e.fc.flush()
	}
}

// close releases the engine's open directories.
func (e *engine) close() { e.dirsChanged() }

func (e *engine) emit() {
	if e.progress != nil {
		e.progress(e.ev)
	}
}

func (e *engine) setProgress(m *devicelink.Message, idx int) {
	if f, ok := devicelink.Float(m.Arg(idx)); ok && f >= 0 && f <= 100 {
		e.ev.Percent = f
	}
}

// run handles DL messages one at a time until the final result. There are
// no read deadlines: the phone may be silent for minutes while it builds
// its snapshot or waits for the passcode (§2.7); ctx cancellation closes
// the connection from outside.
func (e *engine) run(ctx context.Context) (*finalResult, error) {
	for {
		m, err := e.dl.Read()
		if err != nil {
			if cause := context.Cause(ctx); cause != nil {
				return nil, fmt.Errorf("mobilebackup2: %w", cause)
			}
			if s := e.stall(err); s != nil {
				return nil, s
			}
			if errors.Is(err, devicelink.ErrProtocol) {
				return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
			}
			return nil, fmt.Errorf("%w: %w", ErrDisconnected, err)
		}
		if err := e.handle(m); err != nil {
			if errors.Is(err, errFinished) {
				return e.final(m)
			}
			if cause := context.Cause(ctx); cause != nil {
				return nil, fmt.Errorf("mobilebackup2: %w", cause)
			}
			if s := e.stall(err); s != nil {
				return nil, s
			}
			if errors.Is(err, ErrProtocol) || errors.Is(err, ErrDisconnected) {
				return nil, err
			}
			// Handlers return only stream failures (local file errors go to
			// the phone as status codes), e.g. a reply that cannot be written.
			return nil, e.streamErr(err)
		}
	}
}

var errFinished = errors.New("finished")

// stall maps an inactivity timeout of the connection to ErrStalled (nil
// when err is something else or no idle timeout is set).
func (e *engine) stall(err error) error {
	if e.stalled == nil {
		return nil
	}
	return e.stalled(err)
}

func (e *engine) final(m *devicelink.Message) (*finalResult, error) {
	if m.Name == devicelink.MsgDisconnect {
		return nil, fmt.Errorf("%w (DLMessageDisconnect)", ErrDisconnected)
	}
	d, ok := m.Arg(0).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: final message without a dictionary", ErrProtocol)
	}
	r := &finalResult{code: -1}
	if c, ok := devicelink.Int(d["ErrorCode"]); ok {
		r.code = c
	}
	r.description, _ = d["ErrorDescription"].(string)
	r.content, _ = d["Content"].(string)
	return r, nil
}

// handle answers one message. It returns errFinished for the final result
// or a device disconnect, and other errors only when the stream is broken.
func (e *engine) handle(m *devicelink.Message) error {
	switch m.Name {
	case devicelink.MsgProcessMessage, devicelink.MsgDisconnect:
		return errFinished
	case devicelink.MsgDownloadFiles:
		e.setProgress(m, 2)
		if e.ev.Phase == PhaseMoving || e.ev.Phase == PhaseRemoving {
			e.ev.Phase = PhaseChecking // the phone re-reads the backup (§4.3 step 16)
			e.emit()
		}
		return e.downloadFiles(m)
	case devicelink.MsgUploadFiles:
		e.setProgress(m, 1)
		return e.uploadFiles(m)
	case devicelink.MsgGetFreeDiskSpace:
		return e.freeSpace()
	case devicelink.MsgPurgeDiskSpace:
		// Pitfall 13: answer, never stall. We do not delete user data.
		return e.dl.WriteStatus(devicelink.StatusError, "Operation not supported", nil)
	case devicelink.MsgContentsOfDir:
		return e.contentsOfDirectory(m)
	case devicelink.MsgCreateDirectory:
		return e.createDirectory(m)
	case devicelink.MsgMoveItems, devicelink.MsgMoveFiles:
		e.setProgress(m, 2)
		return e.moveItems(m)
	case devicelink.MsgRemoveItems, devicelink.MsgRemoveFiles:
		e.setProgress(m, 2)
		return e.removeItems(m)
	case devicelink.MsgCopyItem:
		return e.copy(m)
	}
	e.log.Debug("unsupported DeviceLink message", "name", m.Name)
	return e.dl.WriteStatus(devicelink.StatusError, "Operation not supported", nil)
}

// streamErr classifies an error that broke the stream: peer nonsense is a
// protocol error, anything else a lost connection.
func (e *engine) streamErr(err error) error {
	if errors.Is(err, devicelink.ErrProtocol) {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return fmt.Errorf("%w: %w", ErrDisconnected, err)
}

// freeSpace answers DLMessageGetFreeDiskSpace with an integer (§2.3,
// pitfall 20), reduced to the configured space limit.
func (e *engine) freeSpace() error {
	free, err := freeSpace(e.rootDir)
	if err != nil {
		return e.dl.WriteStatus(devicelink.StatusError, "", uint64(0))
	}
	if e.q.limit > 0 {
		left := max(e.q.limit-e.q.used, 0)
		free = min(free, uint64(left))
	}
	return e.dl.WriteStatus(devicelink.StatusOK, "", free)
}

// contentsOfDirectory lists a directory exactly, zero-byte files included
// (§2.3, pitfall 6). A missing directory is an empty listing.
func (e *engine) contentsOfDirectory(m *devicelink.Message) error {
	name, ok := m.Arg(0).(string)
	if !ok {
		return e.dl.WriteStatus(devicelink.StatusError, "Invalid path", nil)
	}
	out := map[string]any{}
	p, err := cleanPath(name)
	if err != nil {
		return e.dl.WriteStatus(errnoCode(err), errText(err), out)
	}
	d, err := e.root.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return e.dl.WriteStatus(devicelink.StatusOK, "", out)
		}
		return e.dl.WriteStatus(errnoCode(err), errText(err), out)
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return e.dl.WriteStatus(errnoCode(err), errText(err), out)
	}
	for _, ent := range ents {
		fi, err := ent.Info()
		if err != nil {
			continue
		}
		typ := "DLFileTypeUnknown"
		switch {
		case fi.IsDir():
			typ = "DLFileTypeDirectory"
		case fi.Mode().IsRegular():
			typ = "DLFileTypeRegular"
		}
		out[ent.Name()] = map[string]any{
			"DLFileType":             typ,
			"DLFileSize":             uint64(max(fi.Size(), 0)),
			"DLFileModificationDate": fi.ModTime().UTC().Truncate(time.Second),
		}
	}
	return e.dl.WriteStatus(devicelink.StatusOK, "", out)
}

func (e *engine) createDirectory(m *devicelink.Message) error {
	name, _ := m.Arg(0).(string)
	p, err := e.writable(name)
	if err == nil && !e.dirs[p] {
		if err = mkdirAll(e.root, p); err == nil {
			e.dirs[p] = true
		}
	}
	if err != nil {
		return e.dl.WriteStatus(errnoCode(err), errText(err), devicelink.EmptyParameterString)
	}
	return e.dl.WriteStatus(devicelink.StatusOK, "", devicelink.EmptyParameterString)
}

// moveItems renames each pair, replacing the destination (§2.3). What we
// know about received files moves with them.
func (e *engine) moveItems(m *devicelink.Message) error {
	pairs, _ := m.Arg(0).(map[string]any)
	e.ev.Phase = PhaseMoving
	srcs := make([]string, 0, len(pairs))
	for s := range pairs {
		srcs = append(srcs, s)
	}
	sort.Strings(srcs)
	var first error
	for _, s := range srcs {
		d, _ := pairs[s].(string)
		err := e.moveOne(s, d)
		if err != nil && first == nil {
			first = err
		}
	}
	e.emit()
	if first != nil {
		return e.dl.WriteStatus(errnoCode(first), errText(first), nil)
	}
	return e.dl.WriteStatus(devicelink.StatusOK, "", nil)
}

func (e *engine) moveOne(s, d string) error {
	sp, err := e.writable(s)
	if err != nil {
		return err
	}
	dp, err := e.writable(d)
	if err != nil {
		return err
	}
	// The common case: the phone moves every file it just uploaded out of
	// its staging area (§4.3 step 11). A file received in this run is a
	// regular file we created, so one renameat replaces whatever
	// non-directory is at dp; a directory there makes it fail and the
	// general path below decides.
	if sp != dp && e.received.has(sp) {
		if e.files().rename(sp, dp) == nil {
			delete(e.dirs, dp)
			e.received.moveFile(sp, dp)
			return nil
		}
	}
	// A regular file moved onto a path that is not a directory only touches
	// its own entries; scanning every known path on each move made a backup
	// quadratic in its file count.
	if fileMove(e.root, sp, dp) {
		if err := moveItem(e.root, sp, dp); err != nil {
			delete(e.dirs, sp)
			delete(e.dirs, dp)
			return err
		}
		delete(e.dirs, sp)
		delete(e.dirs, dp)
		e.received.moveFile(sp, dp)
		return nil
	}
	e.forgetDirs(sp)
	e.forgetDirs(dp)
	e.dirsChanged()
	if err := moveItem(e.root, sp, dp); err != nil {
		return err
	}
	e.received.moveTree(sp, dp)
	return nil
}

// fileMove reports whether moving sp to dp moves one non-directory onto a
// path that is missing or not a directory either.
func fileMove(root *os.Root, sp, dp string) bool {
	fi, err := root.Lstat(sp)
	if err != nil || fi.IsDir() {
		return false
	}
	fi, err = root.Lstat(dp)
	return err != nil && errors.Is(err, fs.ErrNotExist) || err == nil && !fi.IsDir()
}

// errReadOnly refuses a change to the backup being restored.
var errReadOnly = errors.New("mobilebackup2: the backup being restored is read-only")

// writable returns p if the phone may change it.
func (e *engine) writable(name string) (string, error) {
	p, err := cleanPath(name)
	if err != nil {
		return "", err
	}
	top, _, _ := strings.Cut(p, "/")
	if e.readOnly[top] || strings.HasPrefix(top, ".") {
		return "", fmt.Errorf("%w: %s", errReadOnly, name)
	}
	return p, nil
}

// knowDirs records the existing directories under top (one level deep),
// so the phone's CreateDirectory requests for them cost nothing.
func (e *engine) knowDirs(top string) {
	if e.dirs == nil {
		e.dirs = map[string]bool{}
	}
	d, err := e.root.Open(top)
	if err != nil {
		return
	}
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return
	}
	e.dirs[top] = true
	for _, ent := range ents {
		if ent.IsDir() {
			e.dirs[top+"/"+ent.Name()] = true
		}
	}
}

// forgetDirs drops cached directories at or below p.
func (e *engine) forgetDirs(p string) {
	for k := range e.dirs {
		if k == p || strings.HasPrefix(k, p+"/") {
			delete(e.dirs, k)
		}
	}
}

// forget drops what we know about p and everything below it.
func (e *engine) forget(p string) {
	e.forgetDirs(p)
	if e.received.has(p) {
		e.received.del(p)
		return
	}
	e.received.forgetTree(p)
}

// removeItems deletes files and directory trees; missing is fine (§2.3).
func (e *engine) removeItems(m *devicelink.Message) error {
	list, _ := m.Arg(0).([]any)
	e.ev.Phase = PhaseRemoving
	var first error
	for _, it := range list {
		name, _ := it.(string)
		p, err := e.writable(name)
		if err == nil && e.files().unlink(p) == nil {
			// One non-directory: nothing below it to forget.
			delete(e.dirs, p)
			e.received.del(p)
			continue
		}
		if err == nil {
			e.forgetDirs(p)
			e.dirsChanged()
			err = e.root.RemoveAll(p)
		}
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		e.forget(p)
	}
	e.emit()
	if first != nil {
		return e.dl.WriteStatus(errnoCode(first), errText(first), nil)
	}
	return e.dl.WriteStatus(devicelink.StatusOK, "", nil)
}

// copy implements DLMessageCopyItem recursively (pitfall 19).
func (e *engine) copy(m *devicelink.Message) error {
	s, _ := m.Arg(0).(string)
	d, _ := m.Arg(1).(string)
	sp, err := cleanPath(s)
	var dp string
	if err == nil {
		dp, err = e.writable(d)
	}
	if err == nil {
		e.dirsChanged()
		err = copyItem(e.root, sp, dp, &e.q)
	}
	if err != nil {
		return e.dl.WriteStatus(errnoCode(err), errText(err), nil)
	}
	e.forget(dp)
	return e.dl.WriteStatus(devicelink.StatusOK, "", nil)
}
