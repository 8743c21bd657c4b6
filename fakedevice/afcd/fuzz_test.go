package afcd

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ibackup/ibackup/lockdown/afc"
)

// FuzzHandle feeds arbitrary requests to the request handler: it never
// panics, always answers, and never touches anything outside the root.
func FuzzHandle(f *testing.F) {
	f.Add(uint64(afc.OpFileRefOpen), append(afc.AppendUint64(nil, 4), "../../x\x00"...), []byte(nil))
	f.Add(uint64(afc.OpRenamePath), []byte("/a\x00/../../b\x00"), []byte(nil))
	f.Add(uint64(afc.OpMakeDir), []byte("/iTunesRestore/../../up\x00"), []byte(nil))
	f.Add(uint64(afc.OpRemovePathAndContents), []byte("..\x00"), []byte(nil))
	f.Add(uint64(afc.OpFileRefLock), afc.AppendUint64(afc.AppendUint64(nil, 1), 6), []byte(nil))
	f.Add(uint64(afc.OpFileRefWrite), afc.AppendUint64(nil, 1), []byte("data"))
	f.Add(uint64(afc.OpFileRefRead), afc.AppendUint64(afc.AppendUint64(nil, 1), 1<<40), []byte(nil))
	parent := f.TempDir()
	root := filepath.Join(parent, "afc")
	if err := os.Mkdir(root, 0o755); err != nil {
		f.Fatal(err)
	}
	srv, err := New(Config{Root: root, MaxPayload: 1 << 16})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = srv.Close() })
	f.Fuzz(func(t *testing.T, op uint64, hd, payload []byte) {
		ss := &session{s: srv, handles: make(map[uint64]*openFile)}
		defer ss.closeAll()
		// Open the lock file first so handle-based operations have a target.
		ss.handle(&afc.Packet{Op: afc.OpFileRefOpen, HeaderData: append(afc.AppendUint64(nil, 2), SyncLockPath+"\x00"...)})
		reply := ss.handle(&afc.Packet{Op: afc.Opcode(op), HeaderData: hd, Payload: payload})
		if reply == nil {
			t.Fatal("no reply")
		}
		ents, err := os.ReadDir(parent)
		if err != nil || len(ents) != 1 || ents[0].Name() != "afc" {
			t.Fatalf("something escaped the root: %v %v", ents, err)
		}
		if _, err := os.Stat(filepath.Join(root, SyncLockPath)); err != nil {
			// Recreate what a fuzzed remove/rename took away.
			_ = os.WriteFile(filepath.Join(root, SyncLockPath), nil, 0o644)
		}
	})
}
