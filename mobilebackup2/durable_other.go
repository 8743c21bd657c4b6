//go:build !linux

package mobilebackup2

import "os"

// haveSyncFS: only Linux has syncfs(2).
const haveSyncFS = false

// syncFS reports that this platform has no syncfs(2); durability.finish
// then fsyncs file by file.
func syncFS(*os.File) error { return errNoSyncFS }
