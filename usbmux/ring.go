package usbmux

// ring is a byte FIFO for a connection's received data. It grows by doubling up to a limit and
// never moves data except when growing, unlike an append-and-compact slice. Not safe for
// concurrent use; Conn guards it with its mutex.
type ring struct {
	buf  []byte
	head int // index of the first unread byte
	n    int // unread bytes
}

// Len returns the number of unread bytes.
func (r *ring) Len() int { return r.n }

// Write appends p, growing the buffer as needed. Callers bound the total themselves.
func (r *ring) Write(p []byte) {
	if len(p) == 0 {
		return
	}
	if need := r.n + len(p); need > len(r.buf) {
		size := max(len(r.buf)*2, 16384)
		for size < need {
			size *= 2
		}
		nb := make([]byte, size)
		m := r.n
		r.Read(nb[:m]) // linearise the unread bytes at the start
		r.buf, r.head, r.n = nb, 0, m
	}
	tail := (r.head + r.n) % len(r.buf)
	k := copy(r.buf[tail:], p)
	copy(r.buf, p[k:])
	r.n += len(p)
}

// Read moves up to len(p) unread bytes into p and returns how many.
func (r *ring) Read(p []byte) int {
	k := min(len(p), r.n)
	if k == 0 {
		return 0
	}
	first := copy(p[:k], r.buf[r.head:])
	copy(p[first:k], r.buf)
	r.head = (r.head + k) % len(r.buf)
	r.n -= k
	if r.n == 0 {
		r.head = 0
	}
	return k
}

// Reset drops all data and the buffer.
func (r *ring) Reset() { *r = ring{} }
