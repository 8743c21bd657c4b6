package usbmux

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// Packet is one mux packet read by a Framer. Payload aliases the Framer's buffer and is valid
// only until the next ReadPacket.
type Packet struct {
	Header  Header
	Payload []byte
}

// Framer reads and writes mux packets (STYLE.md 7). Reads are for one goroutine; writes may come
// from many and are serialised, each packet going out in exactly one Write call (one bulk
// transfer, usb-usbmux-lockdown.md §1.5). It owns the v2 sequence fields: tx_seq counts the
// packets it sent since the last ResetSeq, and rx_seq echoes either the peer's rx_seq (host,
// mirroring usbmuxd) or the peer's tx_seq (device), per §2.2.
type Framer struct {
	r io.Reader
	w io.Writer

	version  atomic.Int32 // 1 or 2; header size for both directions
	echoTx   bool         // device role: rx_seq = last peer tx_seq
	maxRead  int
	maxWrite int
	magic    uint32

	// read side, owned by the reading goroutine
	rbuf       []byte
	start, end int
	lastRx     atomic.Uint32 // value to put into our rx_seq field

	// write side, guarded by wmu
	wmu   sync.Mutex
	wbuf  []byte
	vec   [][]byte
	txSeq uint16
}

// FramerConfig tunes a Framer. The zero value is a host framer.
type FramerConfig struct {
	// Device selects the device role: reads accept host-sized packets (MaxHostPacket), writes
	// may be up to MaxDevicePacket, and rx_seq echoes the host's tx_seq. Otherwise the reverse.
	Device bool
	// Magic replaces 0xFEEDFACE in written v2 headers (tests of hosts that must not check it).
	Magic uint32
}

// maxZeroReads bounds consecutive empty reads (ZLPs) before the framer gives up.
const maxZeroReads = 1000

// NewFramer returns a framer writing to w and reading from r, starting in v1 framing as the
// VERSION handshake requires (§2.2).
func NewFramer(w io.Writer, r io.Reader, cfg FramerConfig) *Framer {
	f := &Framer{r: r, w: w, echoTx: cfg.Device, magic: cfg.Magic,
		maxRead: MaxDevicePacket, maxWrite: MaxHostPacket}
	if cfg.Device {
		f.maxRead, f.maxWrite = MaxHostPacket, MaxDevicePacket
	}
	if f.magic == 0 {
		f.magic = Magic
	}
	f.version.Store(1)
	f.rbuf = make([]byte, f.maxRead+16384)
	return f
}

// Version returns the current framing version (1 or 2).
func (f *Framer) Version() int { return int(f.version.Load()) }

// SetVersion switches both directions to version v framing (1 or 2).
func (f *Framer) SetVersion(v int) {
	if v != 1 {
		v = 2
	}
	f.version.Store(int32(v))
}

// ResetSeq restarts the v2 sequence fields as SETUP does: the next packet written carries
// tx_seq 0 and rx_seq 0xFFFF (§2.2).
func (f *Framer) ResetSeq() {
	f.wmu.Lock()
	f.txSeq = 0
	f.lastRx.Store(0xFFFF)
	f.wmu.Unlock()
}

// MaxWrite is the largest packet this framer writes.
func (f *Framer) MaxWrite() int { return f.maxWrite }

// ReadPacket returns the next packet. Packets may arrive split across several reads and reads
// may be empty (ZLPs); bytes beyond a packet are kept for the next call. A length field outside
// [header size, limit] is link-fatal: the stream cannot be resynchronised.
func (f *Framer) ReadPacket() (Packet, error) {
	v := f.Version()
	hs := HeaderSize(v)
	zero := 0
	for {
		// Unconsumed bytes are rbuf[start:end]. Once a whole header is there, its length
		// decides whether the packet is complete; the limit is checked before any wait for
		// more data, so a hostile length never makes us buffer beyond maxRead.
		if f.end-f.start >= hs {
			h, err := ParseHeader(f.rbuf[f.start:f.end], v)
			if err != nil {
				return Packet{}, err
			}
			if h.Length > uint32(f.maxRead) {
				return Packet{}, fmt.Errorf("usbmux: %s packet of %d bytes exceeds %d: %w",
					h.Protocol, h.Length, f.maxRead, ErrTooLarge)
			}
			if n := int(h.Length); f.end-f.start >= n {
				p := Packet{Header: h, Payload: f.rbuf[f.start+hs : f.start+n]}
				f.start += n
				if v != 1 {
					if f.echoTx {
						f.lastRx.Store(uint32(h.TxSeq))
					} else {
						f.lastRx.Store(uint32(h.RxSeq))
					}
				}
				return p, nil
			}
		}
		// Need more bytes: compact so that at least one 16 KiB transfer fits behind the
		// partial packet (rbuf holds maxRead + 16384, so a whole packet always fits).
		if f.start == f.end {
			f.start, f.end = 0, 0
			if tr, ok := f.r.(TransferReader); ok {
				p, done, err := f.readTransfer(tr, v, hs)
				if done || err != nil {
					return p, err
				}
				if f.end == 0 { // a ZLP
					if zero++; zero > maxZeroReads {
						return Packet{}, fmt.Errorf("usbmux: link returns only empty reads: %w", io.ErrNoProgress)
					}
				} else {
					zero = 0
				}
				continue
			}
		} else if len(f.rbuf)-f.end < 16384 {
			f.end = copy(f.rbuf, f.rbuf[f.start:f.end])
			f.start = 0
		}
		n, err := f.r.Read(f.rbuf[f.end:])
		f.end += n
		if err != nil {
			if err == io.EOF && f.end > f.start {
				err = io.ErrUnexpectedEOF
			}
			return Packet{}, err
		}
		if n == 0 { // a ZLP: harmless, unless the link does nothing else
			if zero++; zero > maxZeroReads {
				return Packet{}, fmt.Errorf("usbmux: link returns only empty reads: %w", io.ErrNoProgress)
			}
		} else {
			zero = 0
		}
	}
}

// TransferReader is an optional interface of a Link (fakedevice/memlink has it): ReadTransfer
// is Read without the copy. It returns up to max bytes of the next transfer (the rest stays for
// the next read, as with Read); the slice is the link's and stays valid until the next
// ReadTransfer or Read.
type TransferReader interface {
	ReadTransfer(max int) ([]byte, error)
}

// readTransfer reads one transfer from tr with the framer's buffer empty. A transfer that is
// exactly one packet is returned in place (done); anything else is copied into rbuf for the
// general path.
func (f *Framer) readTransfer(tr TransferReader, v, hs int) (Packet, bool, error) {
	b, err := tr.ReadTransfer(len(f.rbuf))
	if err != nil {
		return Packet{}, false, err
	}
	if len(b) >= hs {
		h, err := ParseHeader(b, v)
		if err == nil && h.Length <= uint32(f.maxRead) && int(h.Length) == len(b) {
			if v != 1 {
				if f.echoTx {
					f.lastRx.Store(uint32(h.TxSeq))
				} else {
					f.lastRx.Store(uint32(h.RxSeq))
				}
			}
			return Packet{Header: h, Payload: b[hs:]}, true, nil
		}
	}
	f.end = copy(f.rbuf, b)
	return Packet{}, false, nil
}

// WritePacket writes one packet of protocol p whose payload is the concatenation of parts.
func (f *Framer) WritePacket(p Protocol, parts ...[]byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	v := f.Version()
	n := HeaderSize(v)
	for _, b := range parts {
		n += len(b)
	}
	if n > f.maxWrite {
		return fmt.Errorf("usbmux: writing %s packet of %d bytes, limit %d: %w", p, n, f.maxWrite, ErrTooLarge)
	}
	h := Header{Protocol: p, Length: uint32(n), Magic: f.magic, TxSeq: f.txSeq, RxSeq: uint16(f.lastRx.Load())}
	b := AppendHeader(f.wbuf[:0], h, v)
	if v != 1 {
		f.txSeq++
	}
	if bw, ok := f.w.(BuffersWriter); ok {
		f.wbuf = b
		f.vec = append(append(f.vec[:0], b), parts...)
		_, err := bw.WriteBuffers(f.vec)
		clear(f.vec)
		return err
	}
	for _, part := range parts {
		b = append(b, part...)
	}
	f.wbuf = b
	_, err := f.w.Write(b)
	return err
}

// BuffersWriter is an optional interface of a Link (or any framer writer): it sends the
// concatenation of bufs as one transfer, sparing the framer a copy into a contiguous buffer.
// Like Write it must not retain bufs. A wrapper that overrides Write must not expose it (embed
// the Link interface, not the concrete type), or the override is bypassed.
type BuffersWriter interface {
	WriteBuffers(bufs [][]byte) (int, error)
}

// WriteTCP writes one TCP packet: the 20-byte header h followed by payload.
func (f *Framer) WriteTCP(h TCPHeader, payload []byte) error {
	var hb [TCPHeaderSize]byte
	return f.WritePacket(ProtoTCP, h.Append(hb[:0]), payload)
}
