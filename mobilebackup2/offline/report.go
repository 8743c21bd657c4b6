package offline

import (
	"fmt"
	"sort"
	"strings"
)

// Kind classifies a verify problem.
type Kind string

// Problem kinds reported by Verify.
const (
	KindMissing          Kind = "missing"             // manifest names a file that is not stored
	KindTruncated        Kind = "truncated"           // stored file shorter than recorded / not whole cipher blocks
	KindSizeMismatch     Kind = "size-mismatch"       // content length differs from the recorded Size
	KindDigestMismatch   Kind = "digest-mismatch"     // SHA-1 differs from MBFile.Digest
	KindChecksumMismatch Kind = "checksum-mismatch"   // differs from our snapshot store's record (bit rot)
	KindUnreadable       Kind = "unreadable"          // I/O error reading a stored file
	KindUndecryptable    Kind = "undecryptable"       // no key, bad key or bad padding
	KindOrphan           Kind = "orphan"              // stored file the manifest does not name
	KindUnfinished       Kind = "unfinished-snapshot" // Status.plist SnapshotState is not finished
	KindSnapshotLeftover Kind = "snapshot-leftover"   // a Snapshot/ staging folder remains
	KindMetadata         Kind = "metadata"            // Info/Status/Manifest plist missing, empty or unparseable
	KindInconsistent     Kind = "inconsistent"        // metadata files disagree, or invalid values
	KindBadRecord        Kind = "bad-record"          // manifest row that does not decode or is invalid
	KindManifest         Kind = "manifest"            // manifest damaged part-way
)

// Problem is one finding of Verify.
type Problem struct {
	Kind     Kind   `json:"kind"`
	FileID   string `json:"fileID,omitempty"`
	Domain   string `json:"domain,omitempty"`
	Path     string `json:"path,omitempty"` // relativePath, or a metadata file name
	Detail   string `json:"detail"`
	Expected int64  `json:"expected,omitempty"`
	Actual   int64  `json:"actual,omitempty"`
}

// Report is the result of Verify, JSON-friendly.
type Report struct {
	Dir            string    `json:"dir"`
	Format         Format    `json:"format,omitempty"`
	Encrypted      bool      `json:"encrypted"`
	Records        int64     `json:"records"`
	Files          int64     `json:"files"`
	Dirs           int64     `json:"dirs"`
	Symlinks       int64     `json:"symlinks"`
	Bytes          int64     `json:"bytes"`   // plaintext bytes read
	Checked        int64     `json:"checked"` // regular files whose content was read
	UsedHashRecord bool      `json:"usedHashRecord"`
	Problems       []Problem `json:"problems"`
	// Fatal is set when the backup could not be read (exit code 2).
	Fatal string `json:"fatal,omitempty"`
}

// Exit codes of verify (issue 9): 0 clean, 1 problems found, 2 unreadable.
const (
	ExitClean      = 0
	ExitProblems   = 1
	ExitUnreadable = 2
)

// ExitCode classifies the report.
func (r *Report) ExitCode() int {
	switch {
	case r.Fatal != "":
		return ExitUnreadable
	case len(r.Problems) > 0:
		return ExitProblems
	}
	return ExitClean
}

// Summary is the one-line result for humans.
func (r *Report) Summary() string {
	if r.Fatal != "" {
		return "backup could not be read: " + r.Fatal
	}
	counts := map[Kind]int{}
	for _, p := range r.Problems {
		counts[p.Kind]++
	}
	var kinds []string
	for k, n := range counts {
		kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(kinds)
	state := "OK"
	if len(kinds) > 0 {
		state = fmt.Sprintf("%d problems (%s)", len(r.Problems), strings.Join(kinds, ", "))
	}
	return fmt.Sprintf("%s: %d records (%d files, %d dirs, %d symlinks), %d files checked, %d bytes: %s",
		r.Dir, r.Records, r.Files, r.Dirs, r.Symlinks, r.Checked, r.Bytes, state)
}
