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

func newCBC(key []byte, decrypt bool) (cipher.BlockMode, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("keybag: AES-256 key has %d bytes", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keybag: %w", err)
	}
	if decrypt {
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

// decryptReader streams Decrypt: it holds back the last block until EOF so
// padding can be removed.
type decryptReader struct {
	r       io.Reader
	mode    cipher.BlockMode
	buf     []byte // raw ciphertext not yet decrypted
	out     []byte // plaintext ready to return
	pending int    // bytes at the front of buf already handed to out
	eof     bool
	err     error
}

// NewDecryptReader returns a reader of the plaintext of AES-256-CBC (IV
// zero, PKCS#7) ciphertext read from r, in bounded memory. Errors at the end
// wrap ErrBadLength or ErrBadPadding.
func NewDecryptReader(r io.Reader, key []byte) (io.Reader, error) {
	mode, err := newCBC(key, true)
	if err != nil {
		return nil, err
	}
	return &decryptReader{r: r, mode: mode, buf: make([]byte, 0, 256<<10)}, nil
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

// fill reads more ciphertext and moves decrypted whole blocks (all but the
// last one, until EOF) into out.
func (d *decryptReader) fill() {
	if d.pending > 0 { // plaintext at the front was consumed; keep the raw tail
		rest := copy(d.buf, d.buf[d.pending:])
		d.buf = d.buf[:rest]
		d.pending = 0
	}
	if !d.eof {
		free := d.buf[len(d.buf):cap(d.buf)]
		n, err := d.r.Read(free)
		d.buf = d.buf[:len(d.buf)+n]
		if err == io.EOF {
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
	whole := len(d.buf) / aes.BlockSize * aes.BlockSize
	if whole <= aes.BlockSize {
		if len(d.buf) == cap(d.buf) {
			d.err = errors.New("keybag: decrypt buffer full") // impossible: cap ≫ 2 blocks
		}
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
