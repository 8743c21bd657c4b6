package offline

import (
	"crypto/sha1"
	"encoding/hex"
	"io"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
	"github.com/ibackup/ibackup/mobilebackup2/keybag"
)

func itoa(n int) string { return strconv.Itoa(n) }

func sha1hex(b []byte) string { s := sha1.Sum(b); return hex.EncodeToString(s[:]) }

func readAll(t *testing.T, rc io.ReadCloser) []byte {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	return b
}

func encrypt(t *testing.T, key, plain []byte) []byte {
	t.Helper()
	b, err := keybag.Encrypt(key, plain)
	require.NoError(t, err)
	return b
}

func mustLookup(t *testing.T, b *Backup, domain, path string) backupfmt.Record {
	t.Helper()
	var found *backupfmt.Record
	require.NoError(t, b.Each(func(r backupfmt.Record) error {
		if r.Domain == domain && r.RelativePath == path {
			found = &r
		}
		return nil
	}))
	require.NotNil(t, found)
	return *found
}
