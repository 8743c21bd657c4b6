package devicelink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Code is the one-byte type of a raw transfer frame (§3.1).
type Code byte

// Frame codes (mobilebackup2-and-backup-format.md §3.1).
const (
	CodeSuccess     Code = 0x00
	CodeErrorLocal  Code = 0x06
	CodeErrorRemote Code = 0x0B
	CodeFileData    Code = 0x0C
)

// String returns the libimobiledevice name of the code.
func (c Code) String() string {
	switch c {
	case CodeSuccess:
		return "CODE_SUCCESS"
	case CodeErrorLocal:
		return "CODE_ERROR_LOCAL"
	case CodeErrorRemote:
		return "CODE_ERROR_REMOTE"
	case CodeFileData:
		return "CODE_FILE_DATA"
	}
	return fmt.Sprintf("Code(0x%02x)", byte(c))
}

const (
	// MaxNameLen bounds a file name in the stream; longer means desync
	// (§3.3, libimobiledevice#1135).
	MaxNameLen = 4096
	// FramePayload is the data payload per frame we send: 32 KiB, what
	// iTunes and idevicebackup2 use (§3.2, pitfall 4).
	FramePayload = 32 << 10
	// MaxFrameLen bounds an incoming frame length. Data is streamed, never
	// buffered, so this only guards against desync garbage.
	MaxFrameLen = 256 << 20
	// maxErrorText bounds the text of an error frame that we keep.
	maxErrorText = 64 << 10
)

// ErrNameTooLong reports a name length above MaxNameLen.
// It wraps ErrProtocol.
var ErrNameTooLong = fmt.Errorf("%w: file name too long (stream out of sync)", ErrProtocol)

// WriteName writes a length-prefixed name; "" is the end-of-list marker.
func WriteName(w io.Writer, name string) error {
	if len(name) > MaxNameLen {
		return ErrNameTooLong
	}
	b := make([]byte, 4+len(name))
	binary.BigEndian.PutUint32(b, uint32(len(name)))
	copy(b[4:], name)
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("devicelink: write name: %w", err)
	}
	return nil
}

// WriteEnd writes the 4 zero bytes that end a file list.
func WriteEnd(w io.Writer) error { return WriteName(w, "") }

// ReadName reads a length-prefixed name. end is true for the zero-length
// end-of-list marker. Lengths above MaxNameLen are refused before any
// allocation.
func ReadName(r io.Reader) (name string, end bool, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", false, fmt.Errorf("devicelink: read name length: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return "", true, nil
	}
	if n > MaxNameLen {
		return "", false, fmt.Errorf("%w: %d bytes", ErrNameTooLong, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", false, fmt.Errorf("devicelink: read name: %w", err)
	}
	return string(b), false, nil
}

// WriteFrame writes one frame (length, code, payload) in a single Write.
func WriteFrame(w io.Writer, code Code, payload []byte) error {
	b := make([]byte, 5+len(payload))
	binary.BigEndian.PutUint32(b, uint32(len(payload)+1))
	b[4] = byte(code)
	copy(b[5:], payload)
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("devicelink: write frame: %w", err)
	}
	return nil
}

// ErrSourceRead wraps a read failure of SendFile's source; the frame
// sequence was already ended with ERROR_LOCAL, so the stream is in sync.
var ErrSourceRead = errors.New("devicelink: reading source")

// SendFile streams r as DATA frames of at most FramePayload bytes followed
// by SUCCESS (§3.2). It returns the number of content bytes sent. When r
// fails mid-file the frame sequence is ended with an ERROR_LOCAL frame so
// the stream stays in sync, and the read error is returned.
func SendFile(w io.Writer, r io.Reader) (int64, error) {
	buf := make([]byte, 5+FramePayload)
	var total int64
	for {
		n, rerr := io.ReadFull(r, buf[5:])
		if n > 0 {
			binary.BigEndian.PutUint32(buf, uint32(n+1))
			buf[4] = byte(CodeFileData)
			if _, err := w.Write(buf[:5+n]); err != nil {
				return total, fmt.Errorf("devicelink: write frame: %w", err)
			}
			total += int64(n)
		}
		switch {
		case rerr == nil:
			continue
		case errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF):
			return total, WriteFrame(w, CodeSuccess, nil)
		default:
			if err := WriteFrame(w, CodeErrorLocal, []byte(rerr.Error())); err != nil {
				return total, err
			}
			return total, fmt.Errorf("%w: %w", ErrSourceRead, rerr)
		}
	}
}

// FileResult is how one received file ended.
type FileResult struct {
	// Code is CodeSuccess, CodeErrorRemote or CodeErrorLocal.
	Code Code
	// Message is the peer's error text for error codes.
	Message string
	// Bytes is the number of content bytes received.
	Bytes int64
	// WriteErr is the first error returned by the destination writer; the
	// rest of the file was drained so the stream stays in sync (§3.3).
	WriteErr error
}

// ReceiveFile reads DATA frames into dst until SUCCESS or an error frame
// (§3.3). Data is streamed in bounded chunks; after a dst failure the rest
// of the file is drained and reported in FileResult.WriteErr. The returned
// error is non-nil only for stream failures (the connection is unusable).
//
// When dst implements io.ReaderFrom, frame data is read straight into it
// (no copy through an intermediate buffer, no allocation per frame);
// its ReadFrom must read to io.EOF or fail.
func ReceiveFile(r io.Reader, dst io.Writer) (FileResult, error) {
	rf, _ := dst.(io.ReaderFrom)
	var (
		res  FileResult
		werr error
		buf  []byte // for a dst without ReadFrom and for draining; made once per file when needed
		hdr  [5]byte
	)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return res, fmt.Errorf("devicelink: read frame header: %w", err)
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if n == 0 {
			return res, fmt.Errorf("%w: zero frame length", ErrProtocol)
		}
		if n > MaxFrameLen {
			return res, fmt.Errorf("%w: frame length %d above limit", ErrProtocol, n)
		}
		payload := int64(n) - 1
		switch code := Code(hdr[4]); code {
		case CodeFileData:
			fr := frameReader{r: r, n: payload}
			if werr == nil && rf != nil {
				if _, err := rf.ReadFrom(&fr); fr.err == nil && err != nil {
					werr = err
				}
			}
			for fr.err == nil && fr.n > 0 {
				if buf == nil {
					buf = make([]byte, min(FramePayload, max(fr.n, 512)))
				}
				k, _ := io.ReadFull(&fr, buf[:min(int64(len(buf)), fr.n)])
				if werr == nil && k > 0 {
					if _, err := dst.Write(buf[:k]); err != nil {
						werr = err
					}
				}
			}
			res.Bytes += payload - fr.n
			if fr.err != nil {
				return res, fmt.Errorf("devicelink: read frame data: %w", fr.err)
			}
		case CodeSuccess, CodeErrorRemote, CodeErrorLocal:
			msg, err := readText(r, payload)
			if err != nil {
				return res, err
			}
			res.Code, res.Message, res.WriteErr = code, msg, werr
			return res, nil
		default:
			return res, fmt.Errorf("%w: unknown frame code %s", ErrProtocol, code)
		}
	}
}

// frameReader reads the n data bytes of one frame from r and then reports
// io.EOF. A failure of r before the frame's end is kept in err (with
// io.ErrUnexpectedEOF for a plain EOF): it breaks the stream, unlike an
// error of the destination.
type frameReader struct {
	r   io.Reader
	n   int64
	err error
}

func (f *frameReader) Read(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if f.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	k, err := f.r.Read(p)
	f.n -= int64(k)
	if err != nil && f.n > 0 {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		f.err = err
		return k, err
	}
	return k, nil
}

// readText reads an n-byte error text, keeping at most maxErrorText bytes.
func readText(r io.Reader, n int64) (string, error) {
	keep := min(n, maxErrorText)
	b := make([]byte, keep)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("devicelink: read frame text: %w", err)
	}
	if n > keep {
		if _, err := io.CopyN(io.Discard, r, n-keep); err != nil {
			return "", fmt.Errorf("devicelink: read frame text: %w", err)
		}
	}
	return string(b), nil
}
