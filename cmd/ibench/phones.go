package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// phoneSpec describes one simulated phone the benchmark needs.
type phoneSpec struct {
	Files int
	Size  int64 // approximate total content bytes
	Rate  int64 // USB link limit in bytes/s, 0 = unlimited
	Seed  int64 // distinct per phone (the UDID derives from it)
	// Big: the phone gets a small generated base and then Files large
	// files of incompressible data totalling Size (the generator spreads
	// sizes realistically, which leaves few files small).
	Big   bool
	udid  string // filled by makePhone
	bytes int64  // exact content bytes, filled by makePhone
}

// makePhone creates the phone under dir with `ibackup fake new` (staged in
// its own directory first so its UDID is known) and measures its content.
func (b *bench) makePhone(ctx context.Context, dir string, p *phoneSpec) error {
	stage := filepath.Join(b.work, "stage-"+strconv.FormatInt(p.Seed, 10))
	files, size := p.Files, p.Size
	if p.Big {
		files, size = 20, 64<<10
	}
	args := []string{"fake", "new", stage, "--files", strconv.Itoa(files),
		"--size", strconv.FormatInt(size, 10), "--seed", strconv.FormatInt(p.Seed, 10)}
	if p.Rate > 0 {
		args = append(args, "--fault", fmt.Sprintf("rate=%d/s", p.Rate))
	}
	if _, err := b.run(ctx, b.ibackup, nil, args...); err != nil {
		return err
	}
	ents, err := os.ReadDir(stage)
	if err != nil || len(ents) != 1 {
		return fmt.Errorf("fake new %s: expected one phone directory (%v)", stage, err)
	}
	p.udid = ents[0].Name()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(stage, p.udid), filepath.Join(dir, p.udid)); err != nil {
		return err
	}
	_ = os.Remove(stage)
	if p.Big {
		if err := addBigFiles(filepath.Join(dir, p.udid, "files"), p.Files, p.Size, uint64(p.Seed)); err != nil {
			return err
		}
	}
	p.bytes, err = treeBytes(filepath.Join(dir, p.udid, "files"))
	return err
}

// treeBytes sums the sizes of the regular files under root.
func treeBytes(root string) (int64, error) {
	var n int64
	err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// changeFiles rewrites frac of the regular files under root (chosen with a
// fixed seed) with new content of the same size and a newer mtime, the way
// an app changes its data between two backups. It returns how many changed.
func changeFiles(root string, frac float64, seed uint64) (int, error) {
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	n := int(float64(len(files))*frac + 0.5)
	if n < 1 && len(files) > 0 {
		n = 1
	}
	later := time.Now().Add(time.Hour)
	for i, j := range r.Perm(len(files))[:n] {
		p := files[j]
		fi, err := os.Stat(p)
		if err != nil {
			return i, err
		}
		buf := make([]byte, fi.Size())
		for k := range buf {
			buf[k] = byte(r.Uint32())
		}
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			return i, err
		}
		if err := os.Chtimes(p, later, later); err != nil {
			return i, err
		}
	}
	return n, nil
}

// addBigFiles writes n files of random data totalling size bytes as videos
// in the camera roll of the content tree root (files/<Domain>/<path>).
func addBigFiles(root string, n int, size int64, seed uint64) error {
	dir := filepath.Join(root, "CameraRollDomain", "Media", "DCIM", "100APPLE")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(seed, 0x62656e6368)) // "bench"
	buf := make([]byte, 1<<20)
	for i := range n {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("IMG_%04d.MOV", 9000+i)))
		if err != nil {
			return err
		}
		for left := size / int64(n); left > 0; {
			for k := 0; k+8 <= len(buf); k += 8 {
				binary.LittleEndian.PutUint64(buf[k:], r.Uint64())
			}
			m := min(left, int64(len(buf)))
			if _, err := f.Write(buf[:m]); err != nil {
				f.Close()
				return err
			}
			left -= m
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}
