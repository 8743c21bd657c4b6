// Package fakedevicetest holds the integration tests of package offline
// with the fake phone (fakedevice/backupagent) and the host backup engine
// (mobilebackup2): backups made over the protocol verify, and a damaged
// one repaired by offline.Repair is accepted for restore. It is a separate
// package so offline's own tests do not depend on those packages building.
package fakedevicetest
