package secondary

import (
	"bytes"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"duplex/apply"
	"duplex/recordset"
	"duplex/transport"
)

// lostWriteback is a volume whose writeback fails once and then loses the
// data, as a file system may: ext4 gives up the pages of a failed delayed
// allocation and tells only the call that started their writeback
// (sync_file_range as well as fsync), and after a failed fsync the pages
// are clean, so that a retried fsync finds nothing to write and succeeds.
type lostWriteback struct {
	apply.Target
	st *lostState
}

type lostState struct {
	mu                   sync.Mutex
	failStart, failFlush int // failures left to inject
	failed               int // failures injected
}

func (s *lostState) fail(left *int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *left == 0 {
		return false
	}
	*left--
	s.failed++
	return true
}

func (s *lostState) injected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

var errLostWriteback = errors.New("injected writeback failure")

func (t lostWriteback) StartWriteback() error {
	if t.st.fail(&t.st.failStart) {
		return errLostWriteback
	}
	if w, ok := t.Target.(apply.WritebackStarter); ok {
		return w.StartWriteback()
	}
	return nil
}

func (t lostWriteback) Flush() error {
	if t.st.fail(&t.st.failFlush) {
		return errLostWriteback
	}
	return t.Target.Flush()
}

// TestAFailedWritebackIsNeverCheckpointed: once writing a group back to
// the volumes failed (the writeback the checkpointer starts, or a
// checkpoint's fsync), no later checkpoint in the process records it: a
// flush after the failure may succeed with the data gone, and a state file
// naming the group would have a restart skip replaying it. The secondary
// stops instead, and a restart replays the group from the journal.
func TestAFailedWritebackIsNeverCheckpointed(t *testing.T) {
	for _, c := range []struct {
		name         string
		start, flush int
	}{{"start", 1, 0}, {"flush", 0, 1}} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, map[string]int64{"a": 1 << 20})
			// Checkpoint after every group; set before any group reaches
			// the checkpointer.
			r.sec.cfg.CheckpointEvery = 0
			st := &lostState{failStart: c.start, failFlush: c.flush}
			r.sec.view.Lock()
			r.sec.targets["a"] = lostWriteback{Target: r.sec.targets["a"], st: st}
			r.sec.view.Unlock()

			conn, typ, _ := r.dial(r.hello())
			if typ != transport.TypeWelcome {
				t.Fatalf("frame type %d, want a welcome", typ)
			}
			data := bytes.Repeat([]byte{0xa1}, 4096)
			sendRecordSet(t, conn, writeSet(1, 1000, recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4096, Data: data}))
			if reason, acked := answers(t, conn, 0); acked != 1 {
				t.Fatalf("acknowledged through group %d, want 1 (refusal %q)", acked, reason)
			}
			waitFor(t, "the writeback failed", func() bool { return st.injected() > 0 })
			waitFor(t, "the secondary stopped on the failed writeback", func() bool { return r.sec.Stats().Stopped != "" })
			if _, err := r.sec.Fence(); err == nil {
				t.Fatal("a fence after a failed writeback succeeded: it records a group the volumes may not hold")
			}
			if err := r.stop(); err == nil {
				t.Error("Close after a failed writeback reported no error")
			}
			if g := stateFileGroup(t, filepath.Join(r.dir, "state.json")); g != 0 {
				t.Fatalf("the state file names group %d after its writeback failed, want 0: a restart would not replay it", g)
			}

			r.open()
			if got := r.sec.Position().Group; got != 1 {
				t.Fatalf("restarted at group %d, want 1", got)
			}
			got := make([]byte, len(data))
			if err := r.sec.ReadAt("a", got, 0); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("after the restart: err %v, volume holds group 1: %v", err, bytes.Equal(got, data))
			}
		})
	}
}
