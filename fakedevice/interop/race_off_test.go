//go:build !race

package interop

// raceEnabled: the tests run without -race; ibackup is built pure Go.
const raceEnabled = false
