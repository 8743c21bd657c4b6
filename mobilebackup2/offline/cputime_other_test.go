//go:build !unix

package offline

import "time"

// processCPU is unknown here; the CPU ratio is then not reported.
func processCPU() time.Duration { return 0 }
