package backupagent

// DLMessageDownloadFiles from the device's side (mobilebackup2-and-backup-
// format.md §3.2) and the sinks downloaded files stream into.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/ibackup/ibackup/mobilebackup2/devicelink"
)

// download asks the host for files (DLMessageDownloadFiles, §3.2) and
// returns their contents in memory. A missing file is absent from the
// result.
func (a *agent) download(paths ...string) (map[string][]byte, error) {
	bufs := map[string]*chunkBuffer{}
	err := a.downloadTo(func(name string) downloadSink {
		b := &chunkBuffer{limit: maxDownload}
		bufs[name] = b
		return b
	}, paths...)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for name, b := range bufs {
		if b.ok {
			out[name] = b.Bytes()
		}
	}
	return out, nil
}

// maxDownload bounds one downloaded file.
const maxDownload = 1 << 30

// downloadSink receives one downloaded file; done reports whether it
// arrived completely.
type downloadSink interface {
	io.Writer
	done(ok bool)
}

// downloadTo is download with every file streamed into the sink returned
// for its name.
func (a *agent) downloadTo(sink func(name string) downloadSink, paths ...string) error {
	list := make([]any, len(paths))
	for i, p := range paths {
		list[i] = p
	}
	if err := a.dl.Write(devicelink.MsgDownloadFiles, list, map[string]any{}, a.pct, uint64(0)); err != nil {
		return fmt.Errorf("backupagent: %w", err)
	}
	r := a.dl.Stream()
	for {
		name, end, err := devicelink.ReadName(r)
		if err != nil {
			return fmt.Errorf("backupagent: %w", err)
		}
		if end {
			break
		}
		w := sink(name)
		res, err := devicelink.ReceiveFile(r, w)
		if err != nil {
			return fmt.Errorf("backupagent: %w", err)
		}
		w.done(res.Code == devicelink.CodeSuccess && res.WriteErr == nil)
	}
	if _, err := a.readStatus(); err != nil {
		return err
	}
	return nil
}

// chunkBuffer collects a download in blocks: a large file (a Manifest.db of
// a hundred MiB) is copied once into its final slice instead of at every
// doubling of a bytes.Buffer.
type chunkBuffer struct {
	blocks [][]byte
	n      int
	limit  int
	ok     bool // received completely
}

// Write appends p, failing beyond the limit.
func (c *chunkBuffer) Write(p []byte) (int, error) {
	if c.n+len(p) > c.limit {
		return 0, errors.New("backupagent: downloaded file too large")
	}
	c.n += len(p)
	for k := 0; k < len(p); {
		last := len(c.blocks) - 1
		if last < 0 || len(c.blocks[last]) == cap(c.blocks[last]) {
			size := min(max(32<<10, c.n/4), 4<<20)
			c.blocks = append(c.blocks, make([]byte, 0, size))
			last++
		}
		b := c.blocks[last]
		m := copy(b[len(b):cap(b)], p[k:])
		c.blocks[last] = b[:len(b)+m]
		k += m
	}
	return len(p), nil
}

func (c *chunkBuffer) done(ok bool) { c.ok = ok }

// Bytes returns everything written, as one slice.
func (c *chunkBuffer) Bytes() []byte {
	if len(c.blocks) == 1 {
		return c.blocks[0]
	}
	out := make([]byte, 0, c.n)
	for _, b := range c.blocks {
		out = append(out, b...)
	}
	return out
}

// fileSink streams a download into a file and sums it on the way.
type fileSink struct {
	f   *os.File
	sum hash.Hash
	n   int64
	ok  bool
	err error // first write error
}

func newFileSink(path string) (*fileSink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("backupagent: %w", err)
	}
	return &fileSink{f: f, sum: sha256.New()}, nil
}

func (s *fileSink) Write(p []byte) (int, error) {
	if s.err == nil {
		_, s.err = s.f.Write(p)
	}
	s.sum.Write(p)
	s.n += int64(len(p))
	return len(p), nil
}

func (s *fileSink) done(ok bool) { s.ok = ok }

// close closes the file; it reports whether the whole file is in it.
func (s *fileSink) close() bool {
	err := s.f.Close()
	return s.ok && s.err == nil && err == nil && s.n > 0
}

// sha256 returns the sum of what was written.
func (s *fileSink) sha256() (out [32]byte) {
	copy(out[:], s.sum.Sum(nil))
	return out
}

// discardSink drops a file nobody asked for.
type discardSink struct{}

func (discardSink) Write(p []byte) (int, error) { return len(p), nil }
func (discardSink) done(bool)                   {}

// matchWriter checks that what is written equals want, without keeping it.
type matchWriter struct {
	want []byte
	off  int
	diff bool
	ok   bool // received completely
}

func (m *matchWriter) Write(p []byte) (int, error) {
	if m.off+len(p) > len(m.want) || !bytes.Equal(m.want[m.off:m.off+len(p)], p) {
		m.diff = true
	}
	m.off += len(p)
	return len(p), nil
}

func (m *matchWriter) done(ok bool) { m.ok = ok }

// matched reports whether exactly want arrived.
func (m *matchWriter) matched() bool { return m.ok && !m.diff && m.off == len(m.want) }
