package usbmux

// Seq is a 32-bit TCP sequence or acknowledgement number. All arithmetic wraps modulo 2^32 and
// comparisons are valid while the two numbers are less than 2^31 apart (RFC 1982 style). It
// holds no locks and does no I/O (STYLE.md 9).
type Seq uint32

// Add returns s advanced by n bytes.
func (s Seq) Add(n uint32) Seq { return s + Seq(n) }

// Sub returns the distance s − o modulo 2^32: the number of bytes from o up to s.
func (s Seq) Sub(o Seq) uint32 { return uint32(s - o) }

// LessThan reports whether s comes before o.
func (s Seq) LessThan(o Seq) bool { return int32(s-o) < 0 }

// LessThanEq reports whether s comes before o or equals it.
func (s Seq) LessThanEq(o Seq) bool { return int32(s-o) <= 0 }

// Max returns whichever of s and o comes later.
func (s Seq) Max(o Seq) Seq {
	if s.LessThan(o) {
		return o
	}
	return s
}

// WindowBytes converts a window field (256-byte units, usb-usbmux-lockdown.md §2.5) to bytes.
func WindowBytes(units uint16) uint32 { return uint32(units) << 8 }

// WindowUnits converts a byte count to a window field, rounding down and saturating at 0xFFFF.
func WindowUnits(bytes uint32) uint16 {
	u := bytes >> 8
	if u > 0xFFFF {
		return 0xFFFF
	}
	return uint16(u)
}

// Sendable is the send budget: how many more bytes a sender whose next sequence number is next
// may send when the peer has acknowledged up to acked and advertised window bytes. An ack that
// lies ahead of next (impossible for a sane peer) or a full window gives 0, which stops the
// sender until the next ACK — what usbmuxd's unsigned arithmetic amounts to (corrections.md
// M-a 10).
func Sendable(next, acked Seq, window uint32) uint32 {
	if next.LessThan(acked) {
		return 0
	}
	inflight := next.Sub(acked)
	if inflight >= window {
		return 0
	}
	return window - inflight
}
