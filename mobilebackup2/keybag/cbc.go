package keybag

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
)

// ErrBadPadding is returned when decrypted data does not end in valid
// PKCS#7 padding (wrong key, damaged or truncated ciphertext).
var ErrBadPadding = errors.New("keybag: bad PKCS#7 padding")

// ErrBadLength is returned when ciphertext is not a multiple of 16 bytes
// (for example a truncated file).
var ErrBadLength = errors.New("keybag: ciphertext length not a multiple of 16")

var zeroIV [aes.BlockSize]byte

// newBlock returns the AES-256 cipher of key.
func newBlock(key []byte) (cipher.Block, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("keybag: AES-256 key has %d bytes", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keybag: %w", err)
	}
	return block, nil
}

func newCBC(key []byte, decrypt bool) (cipher.BlockMode, error) {
	block, err := newBlock(key)
	if err != nil {
		return nil, err
	}
	if decrypt {
		if fast := newFastCBCDecrypter(key, zeroIV[:]); fast != nil {
			return fast, nil
		}
		return cipher.NewCBCDecrypter(block, zeroIV[:]), nil
	}
	return cipher.NewCBCEncrypter(block, zeroIV[:]), nil
}

// unpad validates and strips PKCS#7 padding from the last block.
func unpad(last []byte) ([]byte, error) {
	n := int(last[len(last)-1])
	if n == 0 || n > aes.BlockSize {
		return nil, ErrBadPadding
	}
	for _, c := range last[len(last)-n:] {
		if int(c) != n {
			return nil, ErrBadPadding
		}
	}
	return last[:len(last)-n], nil
}

// Decrypt decrypts AES-256-CBC (IV zero) data and strips PKCS#7 padding
// (format §6.3, §6.4). Empty input decrypts to empty output (a zero-byte
// file stored without a padding block, format §10 question 6).
func Decrypt(key, ct []byte) ([]byte, error) {
	if len(ct)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadLength, len(ct))
	}
	mode, err := newCBC(key, true)
	if err != nil {
		return nil, err
	}
	if len(ct) == 0 {
		return []byte{}, nil
	}
	out := make([]byte, len(ct))
	mode.CryptBlocks(out, ct)
	tail, err := unpad(out[len(out)-aes.BlockSize:])
	if err != nil {
		return nil, err
	}
	return out[:len(out)-aes.BlockSize+len(tail)], nil
}

// Encrypt pads plaintext with PKCS#7 and encrypts it with AES-256-CBC,
// IV zero. The result is always at least one block.
func Encrypt(key, plain []byte) ([]byte, error) {
	mode, err := newCBC(key, false)
	if err != nil {
		return nil, err
	}
	n := aes.BlockSize - len(plain)%aes.BlockSize
	out := make([]byte, len(plain)+n)
	copy(out, plain)
	for i := len(plain); i < len(out); i++ {
		out[i] = byte(n)
	}
	mode.CryptBlocks(out, out)
	return out, nil
}

// PlaintextSize returns the plaintext length of AES-256-CBC (IV zero,
// PKCS#7) ciphertext of ctSize bytes by decrypting only its last block
// (format §6.4): CBC lets any block be decrypted with the ciphertext block
// before it as IV. tail holds the last min(32, ctSize) bytes of the
// ciphertext. Without a MAC, decrypting the other blocks proves nothing
// more, so callers that need no plaintext use this to check padding and
// size. Errors wrap ErrBadLength or ErrBadPadding.
func PlaintextSize(key, tail []byte, ctSize int64) (int64, error) {
	if ctSize%aes.BlockSize != 0 {
		return 0, fmt.Errorf("%w: %d trailing bytes", ErrBadLength, ctSize%aes.BlockSize)
	}
	if want := min(ctSize, 2*aes.BlockSize); int64(len(tail)) != want {
		return 0, fmt.Errorf("keybag: PlaintextSize needs the last %d ciphertext bytes, got %d", want, len(tail))
	}
	block, err := newBlock(key)
	if err != nil {
		return 0, err
	}
	if ctSize == 0 {
		return 0, nil
	}
	iv := zeroIV[:]
	if len(tail) == 2*aes.BlockSize {
		iv = tail[:aes.BlockSize]
	}
	var last [aes.BlockSize]byte
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(last[:], tail[len(tail)-aes.BlockSize:])
	plain, err := unpad(last[:])
	if err != nil {
		return 0, err
	}
	return ctSize - aes.BlockSize + int64(len(plain)), nil
}

// decryptReader streams Decrypt: it holds back the last block until EOF so
// padding can be removed. It decrypts in place, a whole buffer per
// CryptBlocks call, and implements io.WriterTo so io.Copy hands the
// plaintext on without copying it.
type decryptReader struct {
	r       io.Reader
	mode    cipher.BlockMode
	buf     []byte // ciphertext read, its front decrypted into out
	out     []byte // plaintext ready to return (a window of buf)
	pending int    // bytes at the front of buf already handed to out
	eof     bool
	err     error
}

// minFill is the least ciphertext fill waits for (unless EOF comes first),
// so a reader that returns little per call still gets large CryptBlocks
// calls.
const minFill = 64 << 10

// DecryptBufferSize is the working buffer NewDecryptReader allocates.
const DecryptBufferSize = 256 << 10

// NewDecryptReader returns a reader of the plaintext of AES-256-CBC (IV
// zero, PKCS#7) ciphertext read from r, in bounded memory. Errors at the end
// wrap ErrBadLength or ErrBadPadding.
func NewDecryptReader(r io.Reader, key []byte) (io.Reader, error) {
	return NewDecryptReaderBuffer(r, key, make([]byte, DecryptBufferSize))
}

// NewDecryptReaderBuffer is NewDecryptReader with a caller-supplied working
// buffer, so a caller decrypting many files reuses one buffer instead of
// allocating one per file. buf must have at least 64 bytes (64–256 KiB is
// best) and must not be touched until the reader is no longer used.
func NewDecryptReaderBuffer(r io.Reader, key, buf []byte) (io.Reader, error) {
	if len(buf) < 4*aes.BlockSize {
		return nil, fmt.Errorf("keybag: decrypt buffer of %d bytes is too small", len(buf))
	}
	mode, err := newCBC(key, true)
	if err != nil {
		return nil, err
	}
	return &decryptReader{r: r, mode: mode, buf: buf[:0:len(buf)]}, nil
}

// Read returns plaintext; the error after the last byte reports bad
// length or padding, else io.EOF.
func (d *decryptReader) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		d.fill()
	}
	n := copy(p, d.out)
	d.out = d.out[n:]
	return n, nil
}

// WriteTo writes all remaining plaintext to w straight from the working
// buffer. It returns nil at a clean end, else the error Read would return.
func (d *decryptReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(d.out) > 0 {
			n, err := w.Write(d.out)
			total += int64(n)
			d.out = d.out[n:]
			if err == nil && len(d.out) > 0 {
				err = io.ErrShortWrite
			}
			if err != nil {
				return total, err
			}
		}
		if d.err != nil {
			if d.err == io.EOF {
				return total, nil
			}
			return total, d.err
		}
		d.fill()
	}
}

// fill reads more ciphertext and moves decrypted whole blocks (all but the
// last one, until EOF) into out. It is called only when out is empty.
func (d *decryptReader) fill() {
	if d.pending > 0 { // plaintext at the front was consumed; keep the raw tail
		rest := copy(d.buf, d.buf[d.pending:])
		d.buf = d.buf[:rest]
		d.pending = 0
	}
	if !d.eof {
		free := d.buf[len(d.buf):cap(d.buf)]
		n, err := io.ReadAtLeast(d.r, free, min(len(free), minFill))
		d.buf = d.buf[:len(d.buf)+n]
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			d.eof = true
		} else if err != nil {
			d.err = err
			return
		}
	}
	if d.eof {
		if len(d.buf)%aes.BlockSize != 0 {
			d.err = fmt.Errorf("%w: %d trailing bytes", ErrBadLength, len(d.buf)%aes.BlockSize)
			return
		}
		if len(d.buf) == 0 {
			d.err = io.EOF
			return
		}
		d.mode.CryptBlocks(d.buf, d.buf)
		tail, err := unpad(d.buf[len(d.buf)-aes.BlockSize:])
		if err != nil {
			d.err = err
			return
		}
		d.out = d.buf[:len(d.buf)-aes.BlockSize+len(tail)]
		d.buf = d.buf[len(d.buf):] // keep capacity, nothing left
		d.err = io.EOF
		return
	}
	// Decrypt every whole block except the last one (which may carry
	// padding) in place; the raw tail moves to the front on the next fill.
	// The buffer holds at least 4 blocks and at most 2 stay raw, so a full
	// buffer always yields plaintext.
	whole := len(d.buf) / aes.BlockSize * aes.BlockSize
	if whole <= aes.BlockSize {
		return
	}
	ready := whole - aes.BlockSize
	d.mode.CryptBlocks(d.buf[:ready], d.buf[:ready])
	d.out = d.buf[:ready]
	d.pending = ready
}

// encryptWriter streams Encrypt.
type encryptWriter struct {
	w      io.Writer
	mode   cipher.BlockMode
	buf    []byte
	closed bool
}

// NewEncryptWriter returns a writer that encrypts with AES-256-CBC (IV
// zero) into w; Close writes the final PKCS#7-padded block (it does not
// close w).
func NewEncryptWriter(w io.Writer, key []byte) (io.WriteCloser, error) {
	mode, err := newCBC(key, false)
	if err != nil {
		return nil, err
	}
	return &encryptWriter{w: w, mode: mode}, nil
}

// Write encrypts whole blocks and buffers the rest.
func (e *encryptWriter) Write(p []byte) (int, error) {
	if e.closed {
		return 0, errors.New("keybag: write after close")
	}
	e.buf = append(e.buf, p...)
	whole := len(e.buf) / aes.BlockSize * aes.BlockSize
	if whole > 0 {
		e.mode.CryptBlocks(e.buf[:whole], e.buf[:whole])
		if _, err := e.w.Write(e.buf[:whole]); err != nil {
			return 0, err
		}
		e.buf = append(e.buf[:0], e.buf[whole:]...)
	}
	return len(p), nil
}

// Close pads and writes the final block.
func (e *encryptWriter) Close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	n := aes.BlockSize - len(e.buf)
	for i := 0; i < n; i++ {
		e.buf = append(e.buf, byte(n))
	}
	e.mode.CryptBlocks(e.buf, e.buf)
	_, err := e.w.Write(e.buf)
	return err
}
