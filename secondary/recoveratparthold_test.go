package secondary

import (
	"bytes"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/history"
	"duplex/recordset"
)

// partTrimRace is the coupled secondary of a recover --at whose undo of
// the part of the next group races a release's retry: groups
// 1..trimRaceGroups applied, each overwriting vol1's first half MiB with
// its number, and the first of group trimRaceGroups+1's two writes (its
// byte at offset 0) applied through the Gate's limit; fenced by recover
// --at, stopped and opened again, with the history in segments of 1 MiB
// kept by a clock the test moves and the checkpoint's release owed.
func openPartTrimRace(t *testing.T) *trimRace {
	t.Helper()
	dir := t.TempDir()
	fillVolume(t, dir)
	base := time.Unix(1000, 0).UnixNano()
	now := &atomic.Int64{}
	now.Store(base)
	hist := HistoryConfig{Dir: filepath.Join(dir, "history"), Window: trimRaceWindow, MaxBytes: 16 << 20,
		Now: func() time.Time { return time.Unix(0, now.Load()) }}
	w := &trimRace{base: base, now: now, dir: dir, hist: hist}
	gate := newTestGate(w.groupTime(trimRaceGroups))
	r := openGateRigWith(t, dir, gate, hist)
	for k := uint64(1); k <= trimRaceGroups; k++ {
		r.sendSetAt(t, base, k, []recordset.Update{{Volume: "vol1", Kind: recordset.KindWrite, Offset: 0, Length: trimRaceBytes,
			Data: bytes.Repeat([]byte{byte(k)}, trimRaceBytes)}})
	}
	const next = trimRaceGroups + 1
	r.sendSetAt(t, base, next, []recordset.Update{
		{Volume: "vol1", Kind: recordset.KindWrite, Offset: 0, Length: 4096, Data: bytes.Repeat([]byte{next}, 4096)},
		{Volume: "vol1", Kind: recordset.KindWrite, Offset: trimRaceBytes, Length: 4096, Data: bytes.Repeat([]byte{next}, 4096)},
	})
	waitGate(t, "every group through the limit applied", func() bool { return r.sec.Stats().Group == trimRaceGroups })
	part := w.groupTime(next) - 2 // the stamp of group 7's first write
	gate.set(part)
	waitGate(t, "the part of the next group applied", func() bool { return r.sec.Stats().Time == part })
	if _, err := r.sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	r.close(t)
	w.sec, w.vol = openStoppedFS(t, dir, hist, nil)
	t.Cleanup(func() {
		w.sec.Close()
		w.vol.Close()
	})
	if st := w.sec.Stats(); st.Group != trimRaceGroups || st.Time != part || w.volumeByte(t) != next {
		t.Fatalf("opened fenced at group %d as of %d, the volume holding group %d's byte; want group %d as of %d (the part)",
			st.Group, st.Time, w.volumeByte(t), trimRaceGroups, part)
	}
	w.sec.ckMu.Lock()
	w.sec.owedLocked(w.sec.stateGroup, errors.New("journal: removing a segment: input/output error"))
	w.sec.ckMu.Unlock()
	return w
}

// trimOnFirstUndoWrite makes the first write of an undo run the owed
// release's retry with the window moved past every group but the last,
// as its timer may while the undo writes; it reports whether it ran.
func trimOnFirstUndoWrite(t *testing.T, w *trimRace) *atomic.Bool {
	t.Helper()
	ran := &atomic.Bool{}
	var once sync.Once
	testUndoSink = func(name string, s history.Sink) history.Sink {
		return hookSink{Sink: s, before: func() {
			once.Do(func() {
				ran.Store(true)
				w.retryTrimmingTheWindow()
			})
		}}
	}
	t.Cleanup(func() { testUndoSink = nil })
	return ran
}

// hookSink is a volume an undo writes back, before calling before ahead
// of each write.
type hookSink struct {
	history.Sink
	before func()
}

func (k hookSink) WriteAt(p []byte, off int64) error {
	k.before()
	return k.Sink.WriteAt(p, off)
}

func (k hookSink) WriteZeroes(off, length int64) error {
	k.before()
	return k.Sink.WriteZeroes(off, length)
}

// TestARecoverAtBeforeThePartHoldsItsPointBeforeUndoingThePart: a coupled
// secondary fenced by recover --at holds the first write of group 7,
// applied through the Gate's limit; recover --at to group 1 first undoes
// that part, and meanwhile the checkpoint's release owed since the start
// is retried on its timer with the window moved past every group but the
// last. The recovery holds group 1's undo from before it undoes anything:
// it reaches group 1. Before, it held it only after the part's undo: the
// retry trimmed groups 2 to 4 under it, and the recovery was refused as
// outside the window after the part was undone, the volume at group 6
// though the run changed nothing it reported.
func TestARecoverAtBeforeThePartHoldsItsPointBeforeUndoingThePart(t *testing.T) {
	w := openPartTrimRace(t)
	ran := trimOnFirstUndoWrite(t, w)
	st, err := w.sec.RecoverTo(w.groupTime(1))
	if !ran.Load() {
		t.Fatal("the recovery wrote no undo")
	}
	b := w.volumeByte(t)
	if err != nil {
		t.Fatalf("recover --at group 1, a release's retry trimming the window as the part was undone: %v (at group %d, the volume holds group %d's byte)",
			err, w.sec.Stats().Group, b)
	}
	if st.Group != 1 || b != 1 {
		t.Fatalf("recover --at group 1 reached group %d, the volume holds group %d's byte", st.Group, b)
	}
}
