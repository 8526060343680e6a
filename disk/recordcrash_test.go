package disk

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A process killed -9 at any step of WriteFileAtomic leaves, at the
// record's path, the record as it was (or none) until the rename, and the
// new one from it on: never a file that DecodeRecord refuses, which would
// turn the kill into a start refused for good. What the killed process
// wrote stays in the page cache, which is what the test reads while the
// writer is held at the step.
func TestARecordWriteStoppedAtAnyStepLeavesItWhole(t *testing.T) {
	for _, op := range []Op{OpCreate, OpWrite, OpSync, OpRename, OpSyncDir} {
		for _, before := range []*testRecord{nil, {Session: "s", Group: 1}} {
			name := op.String() + "/none before"
			if before != nil {
				name = op.String() + "/one before"
			}
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "record.json")
				if before != nil {
					b, _ := json.Marshal(before)
					if err := WriteFileAtomic(OS, path, b); err != nil {
						t.Fatal(err)
					}
				}
				in := NewInjector(OS)
				hang := make(chan struct{})
				in.Inject(Fault{Op: op, Under: dir, Hang: hang})
				done := make(chan error, 1)
				go func() {
					b, _ := json.Marshal(testRecord{Session: "s", Group: 2})
					done <- WriteFileAtomic(in, path, b)
				}()
				for in.Injected(op) == 0 {
					time.Sleep(time.Millisecond)
				}
				b, err := os.ReadFile(path)
				var r testRecord
				switch {
				case errors.Is(err, os.ErrNotExist):
					if before != nil {
						t.Errorf("held at %s: the record is gone", op)
					}
				case err != nil:
					t.Fatal(err)
				default:
					if err := DecodeRecord(b, &r, "session", "group"); err != nil {
						t.Errorf("held at %s: the record reads %q: %v", op, b, err)
					}
					want := uint64(1)
					if op == OpSyncDir {
						want = 2
					}
					if before == nil && op != OpSyncDir {
						t.Errorf("held at %s: a record %q where there was none", op, b)
					} else if r.Group != want {
						t.Errorf("held at %s: record of group %d, want %d", op, r.Group, want)
					}
				}
				close(hang)
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}
