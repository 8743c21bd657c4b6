package mobilebackup2

// Phase names the stage of a backup for progress displays.
type Phase string

// Phases in the order a backup goes through them (§4.3).
const (
	PhaseConnecting Phase = "connecting" // handshake, Info.plist, Backup request
	PhasePreparing  Phase = "preparing"  // the phone reads the previous state, makes its snapshot
	PhaseReceiving  Phase = "receiving"  // UploadFiles batches
	PhaseMoving     Phase = "moving"     // MoveItems from Snapshot/ into place
	PhaseRemoving   Phase = "removing"   // RemoveItems of deleted files and Snapshot/
	PhaseChecking   Phase = "checking"   // the phone re-reads the backup (its own verification)
	PhaseVerifying  Phase = "verifying"  // our verification of every file
	PhaseCommitting Phase = "committing" // swapping in the new version
	PhaseSending    Phase = "sending"    // restore: serving the backup's files to the phone
	PhaseDone       Phase = "done"
)

// Event is one progress report. Counters are cumulative for the run.
type Event struct {
	Phase Phase
	// Percent is the phone's overall progress 0–100 (advisory; may jump or
	// go backwards, §2.6).
	Percent float64
	// Files and Bytes count content received so far (sent, during a restore).
	Files int
	Bytes int64
	// TotalBytes is the phone's estimate of bytes to receive so far: the sum
	// of the declared sizes of the upload batches seen (§2.3). It grows as
	// batches arrive; 0 when unknown.
	TotalBytes int64
	// CurrentFile is the phone-side name of the file being received, or the
	// path being verified.
	CurrentFile string
}
