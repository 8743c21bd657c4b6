package backupagent

// The iOS 5–9 backup format (mobilebackup2-and-backup-format.md §5.7,
// real-device-profile.md "iOS 9.3.6 backup written by iTunes 12.11"): a
// Manifest.mbdb instead of Manifest.db, content files stored flat as
// <UDID>/<fileID> (no two-hex folders), Status.plist Version "2.4" and
// Manifest.plist Version "9.1". A phone whose Config.MBDB is set writes
// backups in this format; every phone restores from either format (§5.7:
// mbdb is still accepted by restore on iOS ≤ 26).

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/ibackup/ibackup/mobilebackup2/backupfmt"
)

// Metadata file names of the two formats (§5.1, §5.7).
const (
	manifestDBName   = "Manifest.db"
	manifestMBDBName = "Manifest.mbdb"
)

// statusVersionMBDB is Status.plist "Version" written by iOS 9
// (real-device-profile.md: Version "2.4").
const statusVersionMBDB = "2.4"

// manifestName is the manifest file this phone's backups carry.
func (a *agent) manifestName() string {
	if a.cfg.MBDB {
		return manifestMBDBName
	}
	return manifestDBName
}

// statusVersion is the Status.plist Version this phone writes and expects
// for an incremental backup (§4.4; "2.4" in the mbdb era).
func (a *agent) statusVersion() string {
	if a.cfg.MBDB {
		return statusVersionMBDB
	}
	return backupfmt.StatusVersion
}

// manifestVersion is the Manifest.plist Version this phone writes (§5.4, §5.7).
func (a *agent) manifestVersion() string {
	if a.cfg.MBDB {
		return backupfmt.ManifestVersionMBDB
	}
	return backupfmt.ManifestVersionDB
}

// contentPath is where a content file lives under base (a backup folder or
// its Snapshot): base/<xx>/<fileID>, or base/<fileID> in the flat mbdb-era
// layout (§5.1, §5.7). The flat Snapshot staging of the mbdb era is [I]:
// PR #362 says only that iOS 10 moved from a flat to a prefixed layout.
func contentPath(base, fileID string, flat bool) string {
	if flat || len(fileID) < 2 {
		return base + "/" + fileID
	}
	return base + "/" + fileID[:2] + "/" + fileID
}

// contentFile is contentPath for this phone's own backups.
func (a *agent) contentFile(base, fileID string) string {
	return contentPath(base, fileID, a.cfg.MBDB)
}

// contentDir is the directory of a content file under base (contentPath
// without the name).
func (a *agent) contentDir(base, fileID string) string {
	if a.cfg.MBDB || len(fileID) < 2 {
		return base
	}
	return base + "/" + fileID[:2]
}

// layoutDirs are the directories a backup creates under base: base and its
// 256 prefix folders, or only base in the flat layout (§4.3 steps 5–6).
func (a *agent) layoutDirs(base string) []string {
	if a.cfg.MBDB {
		return []string{base}
	}
	return prefixDirs(base)
}

// contentDirs are the directories holding content files of a backup folder.
func (a *agent) contentDirs(u string) []string {
	if a.cfg.MBDB {
		return []string{u}
	}
	return prefixDirs(u)[1:]
}

// encodeMBDB writes items as a Manifest.mbdb (§5.7). Records keep the
// order of items (sorted by fileID); 32-bit times and the u8 protection
// class are what the format can hold.
func encodeMBDB(items []item) ([]byte, error) {
	var buf bytes.Buffer
	w, err := backupfmt.NewMBDBWriter(&buf)
	if err != nil {
		return nil, fmt.Errorf("backupagent: %w", err)
	}
	for _, it := range items {
		r := it.rec
		if r.File != nil {
			f := *r.File
			f.LastModified = clampU32(f.LastModified)
			f.LastStatusChange = clampU32(f.LastStatusChange)
			f.Birth = clampU32(f.Birth)
			r.File = &f
		}
		if err := w.Add(r); err != nil {
			return nil, fmt.Errorf("backupagent: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("backupagent: %w", err)
	}
	return buf.Bytes(), nil
}

func clampU32(v int64) int64 {
	return min(max(v, 0), 1<<32-1)
}

// decodeMBDB reads every record of a Manifest.mbdb (§5.7).
func decodeMBDB(b []byte) ([]backupfmt.Record, error) {
	r, err := backupfmt.NewMBDBReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("backupagent: %w", err)
	}
	var out []backupfmt.Record
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("backupagent: %w", err)
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FileID < out[j].FileID })
	return out, nil
}

// isMBDB reports whether manifest bytes are a Manifest.mbdb.
func isMBDB(b []byte) bool { return bytes.HasPrefix(b, []byte("mbdb")) }

// manifestBytes picks the manifest of a downloaded backup: Manifest.db when
// the host has one, else Manifest.mbdb (§7.2 step 1: the mbdb is read when
// the backup has no Manifest.db). ok is false when there is neither.
func manifestBytes(got map[string][]byte, s string) (b []byte, flat, ok bool) {
	if b, ok := got[s+"/"+manifestDBName]; ok {
		return b, false, true
	}
	if b, ok := got[s+"/"+manifestMBDBName]; ok {
		return b, true, true
	}
	return nil, false, false
}

// Device-side out-of-space texts for the DeviceFull fault. Restore: 106
// "Insufficient free disk space on device to restore" [V] (§2.5). Backup:
// the facts name no code for a phone too full for its snapshot; 106 with
// the snapshot's ENOSPC text is [I].
const (
	errSnapshotNoSpace = "Failed to create snapshot: No space left on device (28)"
	errRestoreNoSpace  = "Insufficient free disk space on device to restore"
)
