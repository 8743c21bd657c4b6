package afc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Mode is the open mode of FileRefOpen (libimobiledevice afc_file_mode_t;
// idevicebackup2 uses 1, 2 and 4, libimobiledevice-client-needs.md §5.1).
type Mode uint64

// Open modes and their fopen equivalents.
const (
	ModeRdOnly   = Mode(1) // "r"
	ModeRW       = Mode(2) // "r+": must exist
	ModeWrOnly   = Mode(3) // "w": create, truncate
	ModeWR       = Mode(4) // "w+": read/write, create, truncate
	ModeAppend   = Mode(5) // "a"
	ModeRdAppend = Mode(6) // "a+"
)

// String returns the fopen spelling of the mode.
func (m Mode) String() string {
	switch m {
	case ModeRdOnly:
		return "r"
	case ModeRW:
		return "r+"
	case ModeWrOnly:
		return "w"
	case ModeWR:
		return "w+"
	case ModeAppend:
		return "a"
	case ModeRdAppend:
		return "a+"
	}
	return fmt.Sprintf("Mode(%d)", uint64(m))
}

// LockOp is the flock(2)-style operation of FileRefLock: LOCK_SH=1,
// LOCK_EX=2, LOCK_NB=4, LOCK_UN=8. Devices only take non-blocking locks, so
// hosts send 5, 6 and 12 (§5.1: 6 = EX, 12 = UN).
type LockOp uint64

// Lock operations as sent on the wire.
const (
	LockShared    = LockOp(1 | 4)
	LockExclusive = LockOp(2 | 4)
	LockUnlock    = LockOp(8 | 4)
)

// String names the lock operation.
func (l LockOp) String() string {
	switch l {
	case LockShared:
		return "shared"
	case LockExclusive:
		return "exclusive"
	case LockUnlock:
		return "unlock"
	}
	return fmt.Sprintf("LockOp(%d)", uint64(l))
}

// Chunk sizes for FileRefRead requests and FileRefWrite packets. 64 KiB
// reads are what idevicebackup2 requests (§4.4); writes use the same size.
const (
	ReadChunk  = 64 << 10
	WriteChunk = 64 << 10
)

// File is an open handle on the device. Its methods go through the
// Client's serialised request path.
type File struct {
	c      *Client
	path   string
	handle uint64
}

// Open opens path with mode and returns the handle. Devices never return
// handle 0.
func (c *Client) Open(ctx context.Context, path string, mode Mode) (*File, error) {
	hd := AppendCString(AppendUint64(nil, uint64(mode)), path)
	reply, err := c.roundTrip(ctx, OpFileRefOpen, path, hd, nil)
	if err != nil {
		return nil, err
	}
	h, ok := Uint64At(reply.Body(), 0)
	if reply.Op != OpFileRefOpenResult || !ok || h == 0 {
		return nil, fmt.Errorf("afc: %s %q: %w: reply %s", OpFileRefOpen, path, ErrMalformed, reply.Op)
	}
	return &File{c: c, path: path, handle: h}, nil
}

// Handle returns the device's handle number.
func (f *File) Handle() uint64 { return f.handle }

// Path returns the path the file was opened with.
func (f *File) Path() string { return f.path }

// Read reads up to len(p) bytes (at most ReadChunk per request). It returns
// io.EOF when the device answers with no data.
func (f *File) Read(ctx context.Context, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n := min(len(p), ReadChunk)
	hd := AppendUint64(AppendUint64(nil, f.handle), uint64(n))
	reply, err := f.c.roundTrip(ctx, OpFileRefRead, f.path, hd, nil)
	if err != nil {
		return 0, err
	}
	if err := expect(OpFileRefRead, reply, OpData); err != nil {
		return 0, err
	}
	body := reply.Body()
	if len(body) > n {
		return 0, fmt.Errorf("afc: %s %q: %w: %d bytes for a %d-byte request", OpFileRefRead, f.path, ErrMalformed, len(body), n)
	}
	if len(body) == 0 {
		return 0, io.EOF
	}
	return copy(p, body), nil
}

// Write writes p in WriteChunk packets, each answered by a STATUS.
func (f *File) Write(ctx context.Context, p []byte) (int, error) {
	done := 0
	for done < len(p) {
		chunk := p[done:min(len(p), done+WriteChunk)]
		if _, err := f.c.roundTrip(ctx, OpFileRefWrite, f.path, AppendUint64(nil, f.handle), chunk); err != nil {
			return done, err
		}
		done += len(chunk)
	}
	return done, nil
}

// Lock performs one non-blocking lock operation. A lock held elsewhere
// gives an error matching StatusOpWouldBlock.
func (f *File) Lock(ctx context.Context, op LockOp) error {
	hd := AppendUint64(AppendUint64(nil, f.handle), uint64(op))
	_, err := f.c.roundTrip(ctx, OpFileRefLock, f.path, hd, nil)
	return err
}

// LockRetry tries op up to attempts times, waiting interval between tries
// while the device answers StatusOpWouldBlock (idevicebackup2: 50 × 200 ms,
// libimobiledevice-client-needs.md §4.2 step 9). Other errors end it at once.
// After the last failed try it returns the would-block error.
func (f *File) LockRetry(ctx context.Context, op LockOp, attempts int, interval time.Duration) error {
	var err error
	for i := 0; i < max(attempts, 1); i++ {
		if i > 0 {
			t := time.NewTimer(interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("afc: lock %q: %w", f.path, context.Cause(ctx))
			case <-t.C:
			}
		}
		if err = f.Lock(ctx, op); err == nil || !errors.Is(err, StatusOpWouldBlock) {
			return err
		}
	}
	return err
}

// Seek moves the file offset (whence as in io.Seeker).
func (f *File) Seek(ctx context.Context, offset int64, whence int) error {
	hd := AppendUint64(AppendUint64(AppendUint64(nil, f.handle), uint64(whence)), uint64(offset))
	_, err := f.c.roundTrip(ctx, OpFileRefSeek, f.path, hd, nil)
	return err
}

// Tell returns the file offset.
func (f *File) Tell(ctx context.Context) (int64, error) {
	reply, err := f.c.roundTrip(ctx, OpFileRefTell, f.path, AppendUint64(nil, f.handle), nil)
	if err != nil {
		return 0, err
	}
	off, ok := Uint64At(reply.Body(), 0)
	if reply.Op != OpFileRefTellResult || !ok {
		return 0, fmt.Errorf("afc: %s %q: %w: reply %s", OpFileRefTell, f.path, ErrMalformed, reply.Op)
	}
	return int64(off), nil
}

// Truncate sets the file's size (FileRefSetFileSize).
func (f *File) Truncate(ctx context.Context, size int64) error {
	hd := AppendUint64(AppendUint64(nil, f.handle), uint64(size))
	_, err := f.c.roundTrip(ctx, OpFileRefSetFileSize, f.path, hd, nil)
	return err
}

// Close closes the handle; the device drops any lock it holds.
func (f *File) Close(ctx context.Context) error {
	_, err := f.c.roundTrip(ctx, OpFileRefClose, f.path, AppendUint64(nil, f.handle), nil)
	return err
}

// ReadFile reads a whole file: GetFileInfo for the size, then 64 KiB reads
// until that size or EOF, as mobilebackup_afc_get_file_contents does
// (§4.4). Files larger than limit are refused before reading.
func (c *Client) ReadFile(ctx context.Context, path string, limit int64) ([]byte, error) {
	fi, err := c.Stat(ctx, path)
	if err != nil {
		return nil, err
	}
	if fi.Size > limit || fi.Size < 0 {
		return nil, fmt.Errorf("afc: read %q: %w: %d bytes (limit %d)", path, ErrPacketTooBig, fi.Size, limit)
	}
	f, err := c.Open(ctx, path, ModeRdOnly)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, fi.Size)
	n := 0
	for n < len(buf) {
		m, err := f.Read(ctx, buf[n:])
		n += m
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			_ = f.Close(ctx)
			return nil, err
		}
	}
	if err := f.Close(ctx); err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// WriteFile creates or truncates path (mode "w+", as idevicebackup2 writes
// RestoreApplications.plist, §4.2 step 10) and writes data.
func (c *Client) WriteFile(ctx context.Context, path string, data []byte) error {
	f, err := c.Open(ctx, path, ModeWR)
	if err != nil {
		return err
	}
	if _, err := f.Write(ctx, data); err != nil {
		_ = f.Close(ctx)
		return err
	}
	return f.Close(ctx)
}
