//go:build race

package interop

// raceEnabled: the tests run with -race, so the ibackup binary is built
// with it too and a data race in the daemon fails its exit status (66).
const raceEnabled = true
