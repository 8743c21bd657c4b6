package mobilebackup2

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// haveSyncFS: Linux has syncfs(2).
const haveSyncFS = true

// syncFS runs syncfs(2) on the file system holding the open directory d:
// one system call has the kernel's write-back threads write every dirty
// page and inode, whatever the file count.
func syncFS(d *os.File) error {
	rc, err := d.SyscallConn()
	if err != nil {
		return fmt.Errorf("mobilebackup2: sync: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			if serr = unix.Syncfs(int(fd)); serr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return fmt.Errorf("mobilebackup2: sync: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("mobilebackup2: syncfs: %w", serr)
	}
	return nil
}
