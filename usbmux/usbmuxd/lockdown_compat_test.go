package usbmuxd

import "github.com/ibackup/ibackup/lockdown"

// The client adapters plug into the lockdown package's seams (CONTRACT.md).
var (
	_ lockdown.PairRecordStore = (*PairRecordStore)(nil)
	_ lockdown.Dialer          = (*DeviceDialer)(nil)
	_ lockdown.Dialer          = DialFunc(nil)
)
