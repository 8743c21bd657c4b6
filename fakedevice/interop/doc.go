// Package interop proves the simulated iPhone against independently written
// clients: Debian's libimobiledevice-utils 1.3.0 (idevice_id, ideviceinfo,
// idevicepair, idevicebackup2) talk to fake phones through the
// usbmuxd-compatible daemon of `ibackup usbmuxd --fake-dir`, and backups
// cross between their tools and ours (issue 10 item 5).
//
// The package holds tests only. TestMain builds the ibackup binary once
// (with -race when the tests run with -race, so the daemon is race-checked
// under the real clients' load); every test then creates its phones with
// `ibackup fake new`, starts its own daemon on a private UNIX socket and
// runs the Debian tools with USBMUXD_SOCKET_ADDRESS=UNIX:<socket>. After
// each operation the phone's content tree
// (<phones>/<UDID>/files/<Domain>/<relativePath>) is compared with what the
// operation should have left there, and backups are read back with
// `ibackup extract` and `ibackup verify`. Every process is bounded by a
// context timeout and stopped before the test ends; the daemon must exit 0
// on SIGINT.
//
// Covered: idevice_id, ideviceinfo (every profile), idevicepair
// pair/validate/unpair and the trust faults, idevicebackup2 full and
// incremental backups, restores (plain, --system, --remove, --skip-apps,
// --copy, --no-reboot, -s another phone), encryption on/off and changepw
// with encrypted backups and restores, the backup faults, many clients at
// once, and backups crossing between idevicebackup2 and ibackup.
//
// The tests skip when the Debian tools are not installed
// (apt-get install libimobiledevice-utils) and in -short mode. Cases that
// need a device feature the fake does not have yet skip with the feature's
// name; they start passing by themselves once it exists.
//
// The expectations follow libimobiledevice-client-needs.md (what these tool
// versions send) and mobilebackup2-and-backup-format.md §7 (what a device
// does on restore).
package interop
