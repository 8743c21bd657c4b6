//go:build !unix

package mobilebackup2

import (
	"errors"
	"os"
)

// dirCache is the portable stand-in for the *at-syscall cache of Unix
// systems: every operation goes through os.Root.
type dirCache struct{ root *os.Root }

func newDirCache(root *os.Root) *dirCache { return &dirCache{root: root} }

func (c *dirCache) flush() {}

func (c *dirCache) create(p string) (*os.File, error) { return createFresh(c.root, p) }

// errNoFastPath sends the caller to its general os.Root path.
var errNoFastPath = errors.New("mobilebackup2: no fast path on this platform")

func (c *dirCache) rename(sp, dp string) error { return errNoFastPath }

func (c *dirCache) unlink(p string) error { return errNoFastPath }
