package lockdown

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
)

// RecordConn sits between a socket and crypto/tls on connections that can
// leave TLS and continue in plaintext (lockdown after StopSession,
// usb-usbmux-lockdown.md §5.5). crypto/tls reads in large chunks and would
// swallow plaintext that follows the last TLS record (pitfall 23); a
// RecordConn hands out at most one TLS record at a time: the 5-byte record
// header, then exactly the record body. Writes pass through.
//
// Read must not be called concurrently; Write may be.
type RecordConn struct {
	net.Conn
	hdr     [5]byte
	hdrLeft int // header bytes not yet returned (from the end of hdr)
	body    int // record body bytes not yet returned
}

// maxTLSRecord bounds a record body (2^14 plus expansion, RFC 8446 §5.2).
const maxTLSRecord = 1<<14 + 2048

// NewRecordConn wraps c.
func NewRecordConn(c net.Conn) *RecordConn { return &RecordConn{Conn: c} }

// Read returns bytes of the current TLS record only, never beyond its end.
func (r *RecordConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.hdrLeft == 0 && r.body == 0 {
		if _, err := io.ReadFull(r.Conn, r.hdr[:]); err != nil {
			return 0, err
		}
		n := int(binary.BigEndian.Uint16(r.hdr[3:5]))
		if n > maxTLSRecord {
			return 0, fmt.Errorf("lockdown: TLS record of %d bytes exceeds the limit", n)
		}
		r.hdrLeft, r.body = len(r.hdr), n
	}
	if r.hdrLeft > 0 {
		n := copy(p, r.hdr[len(r.hdr)-r.hdrLeft:])
		r.hdrLeft -= n
		return n, nil
	}
	if len(p) > r.body {
		p = p[:r.body]
	}
	n, err := r.Conn.Read(p)
	r.body -= n
	if err == io.EOF && r.body > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Buffered reports whether a record has been partly handed out; plaintext
// reading may only resume on the socket when it is false.
func (r *RecordConn) Buffered() bool { return r.hdrLeft > 0 || r.body > 0 }
