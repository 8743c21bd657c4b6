// Package fakedevice composes a complete simulated iPhone: a phone stored on
// disk (fakedevice/phone) served over an in-memory USB link (memlink) by the
// device side of the mux (devmux), lockdownd on port 62078 and the services
// lockdownd starts (AFC, notification_proxy, installation_proxy and the
// mobilebackup2 backup agent). Faults (ParseFaults) map onto each
// package's knobs so tests and other tools see the same failures a real
// phone shows.
package fakedevice
