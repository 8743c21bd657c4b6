package afcd

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"syscall"

	"github.com/ibackup/ibackup/lockdown/afc"
)

// handle runs one request and returns the reply (without packet number;
// Serve echoes the request's, §5.1). Malformed arguments get
// StatusInvalidArg, unknown operations StatusOpNotSupported; the connection
// itself survives both, as on a device.
func (ss *session) handle(req *afc.Packet) *afc.Packet {
	switch req.Op {
	case afc.OpReadDir:
		return ss.withPath(req, ss.readDir)
	case afc.OpGetFileInfo:
		return ss.withPath(req, ss.fileInfo)
	case afc.OpGetDevInfo:
		// Key/value list like GetFileInfo's; the keys devices send.
		return dataReply(afc.AppendStrings(nil,
			"Model", ss.s.cfg.Model,
			"FSTotalBytes", strconv.FormatUint(ss.s.cfg.TotalBytes, 10),
			"FSFreeBytes", strconv.FormatUint(ss.s.cfg.FreeBytes, 10),
			"FSBlockSize", "4096"))
	case afc.OpMakeDir:
		return ss.withPath(req, ss.makeDir)
	case afc.OpRemovePath:
		return ss.withPath(req, func(_, rel string) *afc.Packet {
			return statusReply(removeStatus(ss.s.root.Remove(rel)))
		})
	case afc.OpRemovePathAndContents:
		// Recursive delete (libimobiledevice afc_remove_path_and_contents).
		// The root itself is refused; a missing path is "not found", which
		// os.RemoveAll alone would hide.
		return ss.withPath(req, func(_, rel string) *afc.Packet {
			if rel == "." {
				return statusReply(afc.StatusPermDenied)
			}
			if _, err := ss.s.root.Lstat(rel); err != nil {
				return statusReply(statusOf(err))
			}
			return statusReply(statusOf(ss.s.root.RemoveAll(rel)))
		})
	case afc.OpRenamePath:
		// Header data: "from\0to\0".
		names := afc.ParseStrings(req.HeaderData)
		if len(names) != 2 {
			return statusReply(afc.StatusInvalidArg)
		}
		_, from := cleanPath(names[0])
		_, to := cleanPath(names[1])
		return statusReply(statusOf(ss.s.root.Rename(from, to)))
	case afc.OpFileRefOpen:
		return ss.open(req)
	case afc.OpFileRefRead, afc.OpFileRefWrite, afc.OpFileRefSeek, afc.OpFileRefTell,
		afc.OpFileRefSetFileSize, afc.OpFileRefClose, afc.OpFileRefLock:
		return ss.fileOp(req)
	}
	return statusReply(afc.StatusOpNotSupported)
}

// withPath decodes the NUL-terminated path argument.
func (ss *session) withPath(req *afc.Packet, fn func(afcPath, rel string) *afc.Packet) *afc.Packet {
	p, ok := cString(req.HeaderData)
	if !ok {
		return statusReply(afc.StatusInvalidArg)
	}
	return fn(cleanPath(p))
}

func cString(b []byte) (string, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", false
	}
	return string(b[:i]), true
}

// readDir answers ReadDir with DATA "name\0…", "." and ".." first like a
// device (the host client drops them again).
func (ss *session) readDir(_, rel string) *afc.Packet {
	d, err := ss.s.root.Open(rel)
	if err != nil {
		return statusReply(statusOf(err))
	}
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return statusReply(statusOf(err))
	}
	names := []string{".", ".."}
	for _, e := range ents {
		names = append(names, e.Name())
	}
	slices.Sort(names[2:])
	return dataReply(afc.AppendStrings(nil, names...))
}

// fileInfo answers GetFileInfo with the st_* list of §5.1 (Lstat: a symlink
// is described, not followed, and carries LinkTarget). st_nlink and
// st_birthtime are approximations the host does not rely on.
func (ss *session) fileInfo(_, rel string) *afc.Packet {
	st, err := ss.s.root.Lstat(rel)
	if err != nil {
		return statusReply(statusOf(err))
	}
	fi := &afc.FileInfo{
		Size: st.Size(), Blocks: (st.Size() + 511) / 512, NLink: 1,
		Type: afc.TypeRegular, ModTime: st.ModTime(), BirthTime: st.ModTime(),
	}
	switch {
	case st.IsDir():
		fi.Type, fi.NLink = afc.TypeDirectory, 2
	case st.Mode()&fs.ModeSymlink != 0:
		fi.Type = afc.TypeSymlink
		fi.LinkTarget, _ = ss.s.root.Readlink(rel)
	}
	return dataReply(fi.Encode())
}

// makeDir creates the directory and its parents; an existing directory is
// success (§6 item 12).
func (ss *session) makeDir(_, rel string) *afc.Packet {
	if err := ss.s.root.MkdirAll(rel, 0o755); err != nil {
		return statusReply(statusOf(err))
	}
	return statusReply(afc.StatusSuccess)
}

// openFlags maps FileRefOpen modes to open(2) flags (fopen semantics).
var openFlags = map[afc.Mode]int{
	afc.ModeRdOnly:   os.O_RDONLY,
	afc.ModeRW:       os.O_RDWR,
	afc.ModeWrOnly:   os.O_WRONLY | os.O_CREATE | os.O_TRUNC,
	afc.ModeWR:       os.O_RDWR | os.O_CREATE | os.O_TRUNC,
	afc.ModeAppend:   os.O_WRONLY | os.O_APPEND | os.O_CREATE,
	afc.ModeRdAppend: os.O_RDWR | os.O_APPEND | os.O_CREATE,
}

// open answers FileRefOpen (u64 mode, path NUL) with FILE_OPEN_RES and a
// non-zero handle unique across the server's connections. Directories are
// refused with StatusObjectIsDir.
func (ss *session) open(req *afc.Packet) *afc.Packet {
	mode, ok := afc.Uint64At(req.HeaderData, 0)
	if !ok {
		return statusReply(afc.StatusInvalidArg)
	}
	p, ok := cString(req.HeaderData[8:])
	flags, known := openFlags[afc.Mode(mode)]
	if !ok || !known {
		return statusReply(afc.StatusInvalidArg)
	}
	afcPath, rel := cleanPath(p)
	f, err := ss.s.root.OpenFile(rel, flags, 0o644)
	if err != nil {
		return statusReply(statusOf(err))
	}
	if st, err := f.Stat(); err != nil || st.IsDir() {
		_ = f.Close()
		return statusReply(afc.StatusObjectIsDir)
	}
	h := ss.s.handle.Add(1)
	ss.handles[h] = &openFile{path: afcPath, f: f}
	return &afc.Packet{Op: afc.OpFileRefOpenResult, HeaderData: afc.AppendUint64(nil, h)}
}

// fileOp runs the operations whose first argument is a handle.
func (ss *session) fileOp(req *afc.Packet) *afc.Packet {
	h, ok := afc.Uint64At(req.HeaderData, 0)
	of := ss.handles[h]
	if !ok || of == nil {
		return statusReply(afc.StatusInvalidArg)
	}
	arg1, has1 := afc.Uint64At(req.HeaderData, 8)
	arg2, has2 := afc.Uint64At(req.HeaderData, 16)
	switch req.Op {
	case afc.OpFileRefClose:
		// Closing drops the handle's locks, as close(2) drops flock locks.
		ss.s.locks.Release(of.path, of)
		delete(ss.handles, h)
		return statusReply(statusOf(of.f.Close()))
	case afc.OpFileRefWrite:
		_, err := of.f.Write(req.Payload)
		return statusReply(statusOf(err))
	case afc.OpFileRefTell:
		off, err := of.f.Seek(0, io.SeekCurrent)
		if err != nil {
			return statusReply(statusOf(err))
		}
		return &afc.Packet{Op: afc.OpFileRefTellResult, HeaderData: afc.AppendUint64(nil, uint64(off))}
	}
	if !has1 {
		return statusReply(afc.StatusInvalidArg)
	}
	switch req.Op {
	case afc.OpFileRefRead:
		// u64 handle, u64 length: DATA with up to length bytes, none at EOF.
		maxRead := uint64(afc.DefaultMaxPayload)
		if ss.s.cfg.MaxPayload > 0 {
			maxRead = uint64(ss.s.cfg.MaxPayload)
		}
		buf := make([]byte, min(arg1, maxRead))
		n, err := io.ReadFull(of.f, buf)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return statusReply(statusOf(err))
		}
		return dataReply(buf[:n])
	case afc.OpFileRefLock:
		// u64 handle, u64 flock op; the phone-wide table decides.
		return statusReply(ss.s.locks.Apply(of.path, of, afc.LockOp(arg1)))
	case afc.OpFileRefSetFileSize:
		return statusReply(statusOf(of.f.Truncate(int64(arg1))))
	case afc.OpFileRefSeek:
		// u64 handle, u64 whence, u64 offset (signed on the wire).
		if !has2 || arg1 > io.SeekEnd {
			return statusReply(afc.StatusInvalidArg)
		}
		_, err := of.f.Seek(int64(arg2), int(arg1))
		return statusReply(statusOf(err))
	}
	return statusReply(afc.StatusOpNotSupported)
}

// statusOf maps a host file-system error to the AFC status a device sends.
func statusOf(err error) afc.Status {
	var errno syscall.Errno
	switch {
	case err == nil:
		return afc.StatusSuccess
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return afc.StatusObjectNotFound
	case errors.Is(err, fs.ErrExist):
		return afc.StatusObjectExists
	case errors.Is(err, fs.ErrPermission):
		return afc.StatusPermDenied
	case errors.Is(err, syscall.EISDIR):
		return afc.StatusObjectIsDir
	case errors.Is(err, syscall.ENOSPC):
		return afc.StatusNoSpaceLeft
	case errors.Is(err, syscall.EINVAL):
		return afc.StatusInvalidArg
	case errors.As(err, &errno):
		return afc.StatusIOError
	}
	// os.Root refuses names that escape it without an errno.
	return afc.StatusPermDenied
}

// removeStatus is statusOf for RemovePath: a non-empty directory is status
// 1, which libimobiledevice reports as DIR_NOT_EMPTY (§5.1).
func removeStatus(err error) afc.Status {
	if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
		return afc.StatusUnknownError
	}
	return statusOf(err)
}
