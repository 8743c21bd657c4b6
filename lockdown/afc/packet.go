// Package afc speaks the Apple File Conduit protocol (service
// "com.apple.afc"): the host client, and the packet codec that the fake
// device's AFC server (fakedevice/afcd) reuses.
//
// Wire facts: libimobiledevice-client-needs.md §5.1 (libimobiledevice 1.3.0
// src/afc.h, src/afc.c) and §6 item 12; operation numbers beyond those used
// by idevicebackup2 follow libimobiledevice's afc.h.
//
// The client takes an already started service connection (a net.Conn from
// lockdown.Client.StartService) and never dials.
package afc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Magic opens every AFC packet (libimobiledevice-client-needs.md §5.1).
const Magic = "CFA6LPAA"

// HeaderSize is the fixed size of an AFC packet header: the magic and four
// little-endian u64 fields.
const HeaderSize = 40

// Default bounds for one packet. Paths and small arguments travel in the
// header data, file bytes in the payload. Real hosts read in 64 KiB requests
// and libimobiledevice writes 32 KiB chunks, so both limits leave headroom.
const (
	DefaultMaxHeaderData = 64 << 10
	DefaultMaxPayload    = 8 << 20
)

// Opcode is the operation field of an AFC packet.
type Opcode uint64

// Operations (libimobiledevice src/afc.h; names follow Apple's, as logged by
// the device).
const (
	OpStatus                = Opcode(0x01)
	OpData                  = Opcode(0x02)
	OpReadDir               = Opcode(0x03)
	OpReadFile              = Opcode(0x04)
	OpWriteFile             = Opcode(0x05)
	OpWritePart             = Opcode(0x06)
	OpTruncate              = Opcode(0x07)
	OpRemovePath            = Opcode(0x08)
	OpMakeDir               = Opcode(0x09)
	OpGetFileInfo           = Opcode(0x0A)
	OpGetDevInfo            = Opcode(0x0B)
	OpWriteFileAtomic       = Opcode(0x0C)
	OpFileRefOpen           = Opcode(0x0D)
	OpFileRefOpenResult     = Opcode(0x0E)
	OpFileRefRead           = Opcode(0x0F)
	OpFileRefWrite          = Opcode(0x10)
	OpFileRefSeek           = Opcode(0x11)
	OpFileRefTell           = Opcode(0x12)
	OpFileRefTellResult     = Opcode(0x13)
	OpFileRefClose          = Opcode(0x14)
	OpFileRefSetFileSize    = Opcode(0x15)
	OpGetConnectionInfo     = Opcode(0x16)
	OpSetConnectionOptions  = Opcode(0x17)
	OpRenamePath            = Opcode(0x18)
	OpSetFSBlockSize        = Opcode(0x19)
	OpSetSocketBlockSize    = Opcode(0x1A)
	OpFileRefLock           = Opcode(0x1B)
	OpMakeLink              = Opcode(0x1C)
	OpSetFileModTime        = Opcode(0x1E)
	OpRemovePathAndContents = Opcode(0x22)
)

var opNames = map[Opcode]string{
	OpStatus: "Status", OpData: "Data", OpReadDir: "ReadDir", OpReadFile: "ReadFile",
	OpWriteFile: "WriteFile", OpWritePart: "WritePart", OpTruncate: "Truncate",
	OpRemovePath: "RemovePath", OpMakeDir: "MakeDir", OpGetFileInfo: "GetFileInfo",
	OpGetDevInfo: "GetDeviceInfo", OpWriteFileAtomic: "WriteFileAtomic",
	OpFileRefOpen: "FileRefOpen", OpFileRefOpenResult: "FileRefOpenResult",
	OpFileRefRead: "FileRefRead", OpFileRefWrite: "FileRefWrite", OpFileRefSeek: "FileRefSeek",
	OpFileRefTell: "FileRefTell", OpFileRefTellResult: "FileRefTellResult",
	OpFileRefClose: "FileRefClose", OpFileRefSetFileSize: "FileRefSetFileSize",
	OpGetConnectionInfo: "GetConnectionInfo", OpSetConnectionOptions: "SetConnectionOptions",
	OpRenamePath: "RenamePath", OpSetFSBlockSize: "SetFSBlockSize",
	OpSetSocketBlockSize: "SetSocketBlockSize", OpFileRefLock: "FileRefLock",
	OpMakeLink: "MakeLink", OpSetFileModTime: "SetFileModTime",
	OpRemovePathAndContents: "RemovePathAndContents",
}

// String returns Apple's name of the operation.
func (o Opcode) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("Opcode(%#x)", uint64(o))
}

// Packet is one AFC packet. HeaderData carries the operation's arguments
// (paths, handles, status codes); Payload carries bulk bytes (file data on
// FileRefWrite, directory listings and file data in replies). On the wire
// this_length = HeaderSize+len(HeaderData) and entire_length adds
// len(Payload).
type Packet struct {
	Num        uint64
	Op         Opcode
	HeaderData []byte
	Payload    []byte
}

// Body returns HeaderData followed by Payload. Readers of replies treat the
// two as one buffer, as libimobiledevice's afc_receive_data does, so a device
// may put a status code in either part.
func (p *Packet) Body() []byte {
	if len(p.Payload) == 0 {
		return p.HeaderData
	}
	b := make([]byte, 0, len(p.HeaderData)+len(p.Payload))
	return append(append(b, p.HeaderData...), p.Payload...)
}

// Codec errors. A stream that produced one is out of sync and must be closed.
var (
	ErrBadMagic     = errors.New("afc: bad packet magic")
	ErrBadLength    = errors.New("afc: inconsistent packet lengths")
	ErrPacketTooBig = errors.New("afc: packet exceeds size limit")
)

// Framer reads and writes AFC packets. ReadPacket may be called from one
// goroutine at a time; WritePacket is safe for concurrent use and issues one
// Write per packet (libimobiledevice reads the 40-byte header with a single
// receive, corrections.md M-b 3).
type Framer struct {
	r   io.Reader
	w   io.Writer
	wmu sync.Mutex

	// MaxHeaderData bounds this_length-40 of incoming packets
	// (DefaultMaxHeaderData when 0).
	MaxHeaderData int
	// MaxPayload bounds entire_length-this_length of incoming packets
	// (DefaultMaxPayload when 0).
	MaxPayload int
}

// NewFramer returns a Framer writing to w and reading from r.
func NewFramer(w io.Writer, r io.Reader) *Framer {
	return &Framer{r: r, w: w}
}

func (f *Framer) limits() (hd, pl uint64) {
	hd, pl = DefaultMaxHeaderData, DefaultMaxPayload
	if f.MaxHeaderData > 0 {
		hd = uint64(f.MaxHeaderData)
	}
	if f.MaxPayload > 0 {
		pl = uint64(f.MaxPayload)
	}
	return hd, pl
}

// ParseHeader decodes and validates a 40-byte header against the limits,
// returning the header-data and payload sizes that follow it.
func ParseHeader(b []byte, maxHeaderData, maxPayload uint64) (num uint64, op Opcode, hdLen, plLen uint64, err error) {
	if len(b) < HeaderSize {
		return 0, 0, 0, 0, fmt.Errorf("%w: header is %d bytes", ErrBadLength, len(b))
	}
	if string(b[:8]) != Magic {
		return 0, 0, 0, 0, fmt.Errorf("%w: %q", ErrBadMagic, b[:8])
	}
	entire := binary.LittleEndian.Uint64(b[8:])
	this := binary.LittleEndian.Uint64(b[16:])
	num = binary.LittleEndian.Uint64(b[24:])
	op = Opcode(binary.LittleEndian.Uint64(b[32:]))
	if this < HeaderSize || entire < this {
		return 0, 0, 0, 0, fmt.Errorf("%w: entire %d, this %d", ErrBadLength, entire, this)
	}
	hdLen, plLen = this-HeaderSize, entire-this
	if hdLen > maxHeaderData || plLen > maxPayload {
		return 0, 0, 0, 0, fmt.Errorf("%w: header data %d, payload %d", ErrPacketTooBig, hdLen, plLen)
	}
	return num, op, hdLen, plLen, nil
}

// ReadPacket reads one packet. io.EOF before the first header byte is
// returned as is (a clean close); anything short after that is
// io.ErrUnexpectedEOF.
func (f *Framer) ReadPacket() (*Packet, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, err
		}
		return nil, fmt.Errorf("afc: reading header: %w", err)
	}
	maxHD, maxPL := f.limits()
	num, op, hdLen, plLen, err := ParseHeader(hdr[:], maxHD, maxPL)
	if err != nil {
		return nil, err
	}
	p := &Packet{Num: num, Op: op}
	if p.HeaderData, err = readN(f.r, hdLen); err != nil {
		return nil, fmt.Errorf("afc: reading %s header data: %w", op, err)
	}
	if p.Payload, err = readN(f.r, plLen); err != nil {
		return nil, fmt.Errorf("afc: reading %s payload: %w", op, err)
	}
	return p, nil
}

// readN reads exactly n bytes, growing the buffer with the data that
// actually arrives so a lying length cannot force a large allocation.
func readN(r io.Reader, n uint64) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	const step = 64 << 10
	buf := make([]byte, 0, min(n, step))
	for uint64(len(buf)) < n {
		chunk := min(n-uint64(len(buf)), step)
		start := len(buf)
		buf = append(buf, make([]byte, chunk)...)
		if _, err := io.ReadFull(r, buf[start:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return buf, nil
}

// AppendPacket appends the wire form of p to b.
func AppendPacket(b []byte, p *Packet) []byte {
	this := uint64(HeaderSize + len(p.HeaderData))
	entire := this + uint64(len(p.Payload))
	b = append(b, Magic...)
	b = binary.LittleEndian.AppendUint64(b, entire)
	b = binary.LittleEndian.AppendUint64(b, this)
	b = binary.LittleEndian.AppendUint64(b, p.Num)
	b = binary.LittleEndian.AppendUint64(b, uint64(p.Op))
	b = append(b, p.HeaderData...)
	return append(b, p.Payload...)
}

// WritePacket writes p in a single Write.
func (f *Framer) WritePacket(p *Packet) error {
	maxHD, maxPL := f.limits()
	if uint64(len(p.HeaderData)) > maxHD || uint64(len(p.Payload)) > maxPL {
		return fmt.Errorf("%w: header data %d, payload %d", ErrPacketTooBig, len(p.HeaderData), len(p.Payload))
	}
	buf := AppendPacket(make([]byte, 0, HeaderSize+len(p.HeaderData)+len(p.Payload)), p)
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if _, err := f.w.Write(buf); err != nil {
		return fmt.Errorf("afc: write %s: %w", p.Op, err)
	}
	return nil
}

// Argument helpers shared by client and server.

// AppendUint64 appends v little-endian (the byte order of every AFC integer).
func AppendUint64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

// Uint64At reads the little-endian u64 at offset off of b.
func Uint64At(b []byte, off int) (uint64, bool) {
	if off < 0 || len(b) < off+8 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[off:]), true
}

// AppendCString appends s and its terminating NUL.
func AppendCString(b []byte, s string) []byte { return append(append(b, s...), 0) }
