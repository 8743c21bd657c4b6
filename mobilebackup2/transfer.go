package mobilebackup2

// File transfers of the DL loop: DownloadFiles (host → phone) and
// UploadFiles (phone → host), mobilebackup2-and-backup-format.md §3.

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/ibackup/ibackup/mobilebackup2/devicelink"
)

// downloadFiles serves files the phone reads from the host (§3.2). A file
// that cannot be read gets an ERROR_LOCAL frame and a per-file entry in a
// −13 multi-status reply; the terminator and the reply are always sent.
func (e *engine) downloadFiles(m *devicelink.Message) error {
	list, _ := m.Arg(0).([]any)
	w := e.dl.Stream()
	errs := map[string]any{}
	for _, it := range list {
		name, ok := it.(string)
		if !ok {
			return fmt.Errorf("%w: DownloadFiles entry is %T", ErrProtocol, it)
		}
		if err := devicelink.WriteName(w, name); err != nil {
			return e.streamErr(err)
		}
		ferr := e.sendOne(w, name)
		if ferr != nil {
			switch {
			case errors.Is(ferr, devicelink.ErrSourceRead):
				// ERROR_LOCAL already sent mid-file.
			case errors.Is(ferr, errStream):
				return e.streamErr(ferr)
			default:
				if err := devicelink.WriteFrame(w, devicelink.CodeErrorLocal, []byte(errText(ferr))); err != nil {
					return e.streamErr(err)
				}
			}
			errs[name] = map[string]any{"DLFileErrorCode": errnoCode(ferr), "DLFileErrorString": errText(ferr)}
		}
	}
	if err := devicelink.WriteEnd(w); err != nil {
		return e.streamErr(err)
	}
	if len(errs) > 0 {
		return e.dl.WriteStatus(devicelink.StatusMultiStatus, "Multi status", errs)
	}
	return e.dl.WriteStatus(devicelink.StatusOK, "", nil)
}

var errStream = errors.New("stream")

// sendOne sends one file's frames; a returned error not wrapping errStream
// means nothing was sent yet and the caller reports it per file.
func (e *engine) sendOne(w io.Writer, name string) error {
	p, err := cleanPath(name)
	if err != nil {
		return err
	}
	f, err := e.root.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %w", name, errIsDir)
	}
	e.ev.CurrentFile = name
	n, err := devicelink.SendFile(w, f)
	e.sentBytes += n
	if errors.Is(err, devicelink.ErrSourceRead) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errStream, err)
	}
	e.sent++
	if e.ev.Phase == PhaseSending {
		e.ev.Files, e.ev.Bytes = e.sent, e.sentBytes
		e.emit()
	}
	return nil
}

var errIsDir = errors.New("is a directory")

// uploadFiles receives files from the phone (§3.3), streaming each to a new
// inode while hashing and counting it.
func (e *engine) uploadFiles(m *devicelink.Message) error {
	if total, ok := devicelink.Int(m.Arg(2)); ok && total > 0 {
		e.ev.TotalBytes += total
	}
	e.ev.Phase = PhaseReceiving
	r := e.dl.Stream()
	var firstErr error
	for {
		devName, end, err := devicelink.ReadName(r)
		if err != nil {
			return e.streamErr(err)
		}
		if end {
			break
		}
		hostName, end, err := devicelink.ReadName(r)
		if err != nil {
			return e.streamErr(err)
		}
		if end {
			return fmt.Errorf("%w: empty destination name in UploadFiles", ErrProtocol)
		}
		e.ev.CurrentFile = devName
		if err := e.receiveOne(hostName, devName); err != nil {
			if !errors.Is(err, errLocal) {
				return err
			}
			if firstErr == nil {
				firstErr = err
			}
		}
		e.emit()
	}
	if firstErr != nil {
		return e.dl.WriteStatus(errnoCode(firstErr), errText(firstErr), nil)
	}
	return e.dl.WriteStatus(devicelink.StatusOK, "", nil)
}

var errLocal = errors.New("local")

// receiveOne receives one file. Errors wrapping errLocal are per-file
// (the stream is still in sync); others break the connection.
func (e *engine) receiveOne(hostName, devName string) error {
	var (
		f   *os.File
		dst io.Writer = io.Discard
	)
	p, perr := e.writable(hostName)
	if perr == nil {
		f, perr = e.files().create(p)
	}
	if perr == nil {
		var h hash.Hash
		if e.hash {
			if e.sha == nil {
				e.sha = sha1.New()
			}
			h = e.sha
			h.Reset()
		}
		e.sink.reset(f, &e.q, h)
		dst = &e.sink
	}
	res, err := devicelink.ReceiveFile(e.dl.Stream(), dst)
	e.ev.Bytes += res.Bytes
	if err != nil {
		if f != nil {
			f.Close()
		}
		return e.streamErr(err)
	}
	werr := perr
	if werr == nil {
		werr = res.WriteErr
	}
	if werr == nil && res.Code == devicelink.CodeSuccess {
		werr = e.sink.flush()
	}
	if f != nil {
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
	}
	if werr == nil && res.Code != devicelink.CodeSuccess {
		// The phone could not read this file (§3.3): the partial file is not
		// valid. Remove it and remember the problem; verification decides.
		_ = e.root.Remove(p)
		e.received.del(p)
		e.remoteErrs = append(e.remoteErrs, FileProblem{Path: p, Problem: fmt.Sprintf("the phone could not read %s: %s", devName, res.Message)})
		e.log.Warn("phone could not send a file", "device path", devName, "error", res.Message)
		return nil
	}
	if werr != nil {
		if f != nil {
			_ = e.root.Remove(p)
		}
		if isDiskFull(werr) {
			e.diskFull = true
		}
		e.lastWrite = werr
		return fmt.Errorf("%w: %s: %w", errLocal, hostName, werr)
	}
	rf := recvFile{size: res.Bytes}
	if e.hash {
		e.sha.Sum(rf.sum[:0])
		rf.hashed = true
	}
	e.received.put(p, rf)
	e.ev.Files++
	e.dur.wrote(res.Bytes)
	return nil
}

// sinkBufSize is the write size of a received file: frames arrive with
// 32 KiB of data each (mobilebackup2-and-backup-format.md §3.1), and one
// write(2) per frame cost more CPU than the data copy itself (issue 11).
const sinkBufSize = 256 << 10

// fileSink is where a received file goes: its data is gathered in one
// buffer the engine reuses for every file, hashed, charged to the quota
// and written out once the buffer is full and at the end of the file
// (flush). It implements io.ReaderFrom, so devicelink.ReceiveFile reads
// frame data straight into the buffer.
type fileSink struct {
	f   *os.File
	q   *quota
	h   hash.Hash // nil when not hashing
	buf []byte    // len = bytes not yet written
}

// reset starts a new file on the reused buffer.
func (s *fileSink) reset(f *os.File, q *quota, h hash.Hash) {
	if s.buf == nil {
		s.buf = make([]byte, 0, sinkBufSize)
	}
	s.f, s.q, s.h, s.buf = f, q, h, s.buf[:0]
}

// Write buffers p.
func (s *fileSink) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if len(s.buf) == cap(s.buf) {
			if err := s.flush(); err != nil {
				return n, err
			}
		}
		k := copy(s.buf[len(s.buf):cap(s.buf)], p)
		s.buf = s.buf[:len(s.buf)+k]
		p = p[k:]
		n += k
	}
	return n, nil
}

// ReadFrom reads r to its end straight into the buffer.
func (s *fileSink) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		if len(s.buf) == cap(s.buf) {
			if err := s.flush(); err != nil {
				return total, err
			}
		}
		k, err := r.Read(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+k]
		total += int64(k)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// flush hashes, charges and writes the buffered data.
func (s *fileSink) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	if err := s.q.take(len(s.buf)); err != nil {
		return err
	}
	if s.h != nil {
		s.h.Write(s.buf)
	}
	_, err := s.f.Write(s.buf)
	s.buf = s.buf[:0]
	return err
}
