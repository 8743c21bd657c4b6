package offline

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
)

func TestLastBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 200; round++ {
		var all []byte
		var tail lastBytes
		for n := rng.IntN(6); n >= 0; n-- {
			chunk := make([]byte, rng.IntN(50))
			for i := range chunk {
				chunk[i] = byte(rng.Uint32())
			}
			all = append(all, chunk...)
			tail.add(chunk)
		}
		assert.True(t, bytes.Equal(all[len(all)-min(len(all), 32):], tail.bytes()))
	}
}

// flipMiddle flips one byte in the middle of a stored file, keeping its
// size and (for an encrypted file) its padding block intact.
func flipMiddle(t *testing.T, b *Backup, path string) {
	t.Helper()
	p := fileOf(t, b, appDom, path)
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Greater(t, len(data), 64)
	data[20] ^= 0x80
	require.NoError(t, os.WriteFile(p, data, 0o644))
}

// TestVerifyEncryptedDigests covers the decrypt-and-hash path: an
// encrypted backup whose manifest carries plaintext digests.
func TestVerifyEncryptedDigests(t *testing.T) {
	o := buildOpts{password: testPassword, digests: true}
	for _, tc := range []struct {
		name  string
		apply func(t *testing.T, b *Backup)
		want  []string
	}{
		{"clean", func(*testing.T, *Backup) {}, nil},
		{"bit flip", func(t *testing.T, b *Backup) { flipMiddle(t, b, f1) }, []string{"digest-mismatch:" + f1}},
		{"truncated", func(t *testing.T, b *Backup) {
			require.NoError(t, os.Truncate(fileOf(t, b, appDom, f1), 50))
		}, []string{"truncated:" + f1}},
		{"bad padding", func(t *testing.T, b *Backup) {
			p := fileOf(t, b, appDom, f1)
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			data[len(data)-1] ^= 0x55
			require.NoError(t, os.WriteFile(p, data, 0o644))
		}, []string{"undecryptable:" + f1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := buildBackup(t, t.TempDir(), o)
			b, err := Open(dir, Options{Password: o.password})
			require.NoError(t, err)
			tc.apply(t, b)
			require.NoError(t, b.Close())
			rep, err := Verify(dir, VerifyOptions{Options: Options{Password: o.password}})
			require.NoError(t, err)
			assert.Equal(t, tc.want, kinds(rep))
			assert.Positive(t, rep.Bytes)
		})
	}
}

// TestVerifyEncryptedNoDigest: without digests only size and padding can
// be checked (from the last block); a flipped middle byte is invisible
// unless our hash record names the file.
func TestVerifyEncryptedNoDigest(t *testing.T) {
	dir := buildBackup(t, t.TempDir(), buildOpts{password: testPassword})
	b, err := Open(dir, Options{Password: testPassword})
	require.NoError(t, err)
	rec := mustLookup(t, b, appDom, f1)
	id := backupfmt.FileID(appDom, f1)
	rel := id[:2] + "/" + id
	stored, err := os.ReadFile(filepath.Join(dir, rel))
	require.NoError(t, err)
	hr := mapRecord{rel: {itoa(len(stored)), sha1hex(stored)}}
	opts := VerifyOptions{Options: Options{Password: testPassword}, HashRecord: hr}

	rep, err := Verify(dir, opts)
	require.NoError(t, err)
	assert.Empty(t, kinds(rep))
	assert.Equal(t, rec.File.Size, int64(137), "plaintext size of file001")

	flipMiddle(t, b, f1)
	require.NoError(t, b.Close())
	rep, err = Verify(dir, VerifyOptions{Options: Options{Password: testPassword}, NoHashRecord: true})
	require.NoError(t, err)
	assert.Empty(t, kinds(rep), "CBC without a MAC or digest cannot notice")
	rep, err = Verify(dir, opts)
	require.NoError(t, err)
	assert.Equal(t, []string{"checksum-mismatch:" + f1}, kinds(rep))
}

// TestVerifyEncryptedDigestsHashRecord: stored-byte checksums and
// plaintext digests are both checked in the one decrypting pass.
func TestVerifyEncryptedDigestsHashRecord(t *testing.T) {
	dir := buildBackup(t, t.TempDir(), buildOpts{password: testPassword, digests: true})
	id := backupfmt.FileID(appDom, f1)
	rel := id[:2] + "/" + id
	stored, err := os.ReadFile(filepath.Join(dir, rel))
	require.NoError(t, err)
	opts := VerifyOptions{Options: Options{Password: testPassword},
		HashRecord: mapRecord{rel: {itoa(len(stored)), sha1hex(stored)}}}
	rep, err := Verify(dir, opts)
	require.NoError(t, err)
	assert.Empty(t, kinds(rep))

	b, err := Open(dir, Options{Password: testPassword})
	require.NoError(t, err)
	flipMiddle(t, b, f1)
	require.NoError(t, b.Close())
	rep, err = Verify(dir, opts)
	require.NoError(t, err)
	assert.Equal(t, []string{"checksum-mismatch:" + f1, "digest-mismatch:" + f1}, kinds(rep))
}

// TestVerifyWorkersDeterministic: the report does not depend on how many
// workers read content.
func TestVerifyWorkersDeterministic(t *testing.T) {
	dir := buildBackup(t, t.TempDir(), buildOpts{password: testPassword, digests: true, nFiles: 30})
	b, err := Open(dir, Options{Password: testPassword})
	require.NoError(t, err)
	for i := 3; i < 30; i += 3 {
		flipMiddle(t, b, fmt.Sprintf("Documents/file%03d.txt", i))
	}
	require.NoError(t, os.Truncate(fileOf(t, b, appDom, f1), 48))
	require.NoError(t, b.Close())
	var want []Problem
	for _, w := range []int{1, 2, 3, 8} {
		rep, err := Verify(dir, VerifyOptions{Options: Options{Password: testPassword}, Workers: w})
		require.NoError(t, err)
		// file003, file006, …, file027; f1 cut to three blocks of 0x01
		// bytes, which ends in valid padding: size and digest mismatch
		require.Len(t, rep.Problems, 11)
		if want == nil {
			want = rep.Problems
			continue
		}
		assert.Equal(t, want, rep.Problems, "workers=%d", w)
	}
}
