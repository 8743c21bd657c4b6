package offline

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"os"

	"github.com/ibackup/ibackup/mobilebackup2/keybag"
)

// contentBufSize is each verify worker's read (and decrypt) buffer: large
// reads and large CryptBlocks calls, allocated once per worker.
const contentBufSize = keybag.DecryptBufferSize

// checkContent reads one stored file and compares it with its record
// (runs on worker goroutines; buf is the worker's own buffer).
//
// Every byte is read, so an I/O error anywhere is a finding, but only what
// something can be compared with is computed: SHA-1 of the stored bytes
// when our hash record names the file (or a plain backup's manifest has a
// digest), plaintext only when an encrypted file's manifest digest needs
// it. Otherwise an encrypted file's size and padding come from its last
// block alone (keybag.PlaintextSize): CBC has no MAC, so decrypting the
// other blocks proves nothing more (format §6.4).
func (v *verifier) checkContent(j job, buf []byte) {
	rec := j.rec
	p := Problem{FileID: rec.FileID, Domain: rec.Domain, Path: rec.RelativePath, Expected: rec.File.Size}
	path := v.b.ContentPath(rec.FileID)
	f, err := os.Open(path)
	if err != nil {
		p.Kind, p.Detail = KindUnreadable, err.Error()
		v.add(p)
		return
	}
	defer f.Close()
	recSize, recSum, inRecord := j.sum.size, j.sum.sha1, j.sum.ok
	hasDigest := len(rec.File.Digest) == sha1.Size
	var storedHash hash.Hash
	if inRecord || (hasDigest && !v.b.Encrypted) {
		storedHash = sha1.New()
	}
	var key []byte
	if v.b.Encrypted {
		if key, err = v.b.FileKey(rec); err != nil {
			p.Kind, p.Detail = KindUndecryptable, err.Error()
			v.add(p)
			return
		}
	}
	var (
		plain     int64     // plaintext length
		stored    int64     // stored length
		plainHash hash.Hash // SHA-1 of the plaintext, when needed
	)
	switch {
	case !v.b.Encrypted:
		stored, err = readStored(f, storedHash, buf, nil)
		plain, plainHash = stored, storedHash
	case !hasDigest:
		var tail lastBytes
		if stored, err = readStored(f, storedHash, buf, &tail); err == nil {
			plain, err = keybag.PlaintextSize(key, tail.bytes(), stored)
		}
	default:
		plainHash = sha1.New()
		src := &countingReader{r: f}
		if storedHash != nil {
			src.r = io.TeeReader(f, storedHash)
		}
		var dr io.Reader
		if dr, err = keybag.NewDecryptReaderBuffer(src, key, buf); err == nil {
			plain, err = io.Copy(plainHash, dr) // WriteTo: no copy
		}
		stored = src.n
	}
	if err != nil {
		p.Kind, p.Detail = contentErrKind(err), err.Error()
		if p.Kind == KindTruncated {
			p.Detail = "stored file is not whole cipher blocks: " + err.Error()
		}
		v.add(p)
		return
	}
	v.mu.Lock()
	v.rep.Checked++
	v.rep.Bytes += plain
	v.mu.Unlock()
	p.Actual = plain
	if plain != rec.File.Size {
		p.Kind = KindSizeMismatch
		p.Detail = "content length differs from the recorded size (the content is kept as is)"
		if plain < rec.File.Size && !v.b.Encrypted {
			p.Kind, p.Detail = KindTruncated, "stored file is shorter than the recorded size"
		}
		v.add(p)
	}
	if d := rec.File.Digest; hasDigest {
		// Digest is SHA-1 of the content (format §5.5, §5.7); whether of
		// plaintext or ciphertext on encrypted backups is open (§10 q5), so
		// either matches.
		if !bytes.Equal(plainHash.Sum(nil), d) && !(v.b.Encrypted && bytes.Equal(fileSHA1(path, storedHash), d)) {
			p.Kind, p.Detail = KindDigestMismatch, "SHA-1 differs from the manifest digest"
			v.add(p)
		}
	}
	if inRecord {
		if got := hex.EncodeToString(storedHash.Sum(nil)); got != recSum || stored != recSize {
			p.Kind, p.Detail = KindChecksumMismatch, "stored bytes differ from our verification record (bit rot or later change)"
			v.add(p)
		}
	}
}

// contentErrKind classifies an error met while reading stored content.
func contentErrKind(err error) Kind {
	switch {
	case errors.Is(err, keybag.ErrBadLength):
		return KindTruncated
	case errors.Is(err, keybag.ErrBadPadding):
		return KindUndecryptable
	default:
		return KindUnreadable
	}
}

// readStored reads r to the end through buf, feeding h (when not nil) and
// keeping the last bytes in tail (when not nil); it returns the length.
func readStored(r io.Reader, h hash.Hash, buf []byte, tail *lastBytes) (int64, error) {
	var n int64
	for {
		m, err := r.Read(buf)
		if m > 0 {
			if h != nil {
				h.Write(buf[:m])
			}
			if tail != nil {
				tail.add(buf[:m])
			}
			n += int64(m)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// lastBytes keeps the last two cipher blocks seen, what
// keybag.PlaintextSize needs.
type lastBytes struct {
	b [32]byte
	n int
}

func (t *lastBytes) add(p []byte) {
	if len(p) >= len(t.b) {
		t.n = copy(t.b[:], p[len(p)-len(t.b):])
		return
	}
	keep := min(t.n, len(t.b)-len(p))
	copy(t.b[:keep], t.b[t.n-keep:t.n])
	t.n = keep + copy(t.b[keep:], p)
}

func (t *lastBytes) bytes() []byte { return t.b[:t.n] }

// fileSHA1 returns SHA-1 of a stored file: stored when it was already
// computed while reading, else by reading the file again (nil on error).
// Used only after a digest mismatch of an encrypted file, to accept a
// digest of the stored bytes.
func fileSHA1(path string, stored hash.Hash) []byte {
	if stored != nil {
		return stored.Sum(nil)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	h := sha1.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil
	}
	return h.Sum(nil)
}
