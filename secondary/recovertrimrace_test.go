package secondary

import (
	"bytes"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
	"duplex/history"
	"duplex/recordset"
	"duplex/volume"
)

// trimRace is a stopped secondary, fenced by recover --at, that applied
// groups 1..trimRaceGroups, each overwriting the same half MiB of vol1
// with its number, with history kept in segments of 1 MiB (two groups'
// undo each) by a clock the test moves; its checkpoint's release of the
// journal is owed, as after a release that failed at the start.
type trimRace struct {
	sec  *Secondary
	vol  *volume.Volume
	base int64
	now  *atomic.Int64
	dir  string
	hist HistoryConfig
}

const (
	trimRaceGroups = 6
	trimRaceBytes  = 512 << 10
	trimRaceWindow = 10 * time.Second
)

func openTrimRace(t *testing.T) *trimRace {
	t.Helper()
	return openTrimRaceFS(t, nil)
}

// openTrimRaceFS is openTrimRace with the stopped secondary's journal,
// state file and history on fsys.
func openTrimRaceFS(t *testing.T, fsys disk.FS) *trimRace {
	t.Helper()
	dir := t.TempDir()
	fillVolume(t, dir)
	base := time.Unix(1000, 0).UnixNano()
	now := &atomic.Int64{}
	now.Store(base)
	hist := HistoryConfig{Dir: filepath.Join(dir, "history"), Window: trimRaceWindow, MaxBytes: 16 << 20,
		Now: func() time.Time { return time.Unix(0, now.Load()) }}
	r := openGateRigWith(t, dir, nil, hist)
	for k := uint64(1); k <= trimRaceGroups; k++ {
		r.sendSetAt(t, base, k, []recordset.Update{{Volume: "vol1", Kind: recordset.KindWrite, Offset: 0, Length: trimRaceBytes,
			Data: bytes.Repeat([]byte{byte(k)}, trimRaceBytes)}})
	}
	waitGate(t, "every group applied", func() bool { return r.sec.Stats().Group == trimRaceGroups })
	if _, err := r.sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	r.close(t)
	sec, v := openStoppedFS(t, dir, hist, fsys)
	w := &trimRace{sec: sec, vol: v, base: base, now: now, dir: dir, hist: hist}
	t.Cleanup(func() {
		w.sec.Close()
		w.vol.Close()
	})
	// What a release that failed at the start leaves: retried on its
	// timer (retryRelease), which takes none of RecoverTo's locks.
	sec.ckMu.Lock()
	sec.owedLocked(sec.stateGroup, errors.New("journal: removing a segment: input/output error"))
	sec.ckMu.Unlock()
	return w
}

// reopen stops the secondary and opens it again, as the next recover or
// start does.
func (w *trimRace) reopen(t *testing.T) {
	t.Helper()
	w.sec.Close()
	w.vol.Close()
	w.sec, w.vol = openStoppedFS(t, w.dir, w.hist, nil)
}

// volumeByte is the first byte of vol1: the group whose write it holds.
func (w *trimRace) volumeByte(t *testing.T) byte {
	t.Helper()
	b := make([]byte, 1)
	if err := w.vol.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b[0]
}

// failRecoverToGroup1 runs a recover --at to group 1 that a read of the
// history stops after the state file names group 1, before a byte of
// the volume is undone, and then the owed release's retry with the
// window moved past every group but the last.
func (w *trimRace) failRecoverToGroup1(t *testing.T, inj *disk.Injector) {
	t.Helper()
	inj.Inject(disk.Fault{Op: disk.OpRead, Under: w.hist.Dir, Once: true})
	if _, err := w.sec.RecoverTo(w.groupTime(1)); err == nil {
		t.Fatal("the history's read fault did not stop the recovery")
	}
	if inj.Injected(disk.OpRead) == 0 {
		t.Fatal("no read of the history failed")
	}
	if g := w.sec.Stats().Group; g != 1 {
		t.Fatalf("the stopped recovery left the state at group %d, want the group it named, 1", g)
	}
	w.retryTrimmingTheWindow()
}

// groupTime is the consistency time of group k.
func (w *trimRace) groupTime(k uint64) int64 { return w.base + int64(k)*int64(time.Millisecond) }

// retryTrimmingTheWindow moves the clock past the window of every group
// and runs the owed release's retry, as its timer would now: it trims
// the history's old end, the undo of every group but the last.
func (w *trimRace) retryTrimmingTheWindow() {
	w.now.Store(w.groupTime(trimRaceGroups) + int64(2*trimRaceWindow))
	w.sec.retryRelease()
}

// TestARecoverToIsNotTrimmedByAReleasesRetry: recover --at to group 1,
// whose undo the history holds when it is asked; as it reads it, the
// checkpoint's release owed since the start is retried on its timer and
// trims the history's old end, the window having moved past every group
// but the last. The recovery holds what it reads: the volume ends at
// group 1 and the state file says so. Before, the trim dropped the undo
// of groups 2 to 4 under it, and RecoverTo failed after the state file
// named group 1, the volume still at group 6.
func TestARecoverToIsNotTrimmedByAReleasesRetry(t *testing.T) {
	w := openTrimRace(t)
	raced := false
	w.sec.testRecovering = func(p history.Point) {
		raced = true
		w.retryTrimmingTheWindow()
	}
	st, err := w.sec.RecoverTo(w.groupTime(1))
	if !raced {
		t.Fatal("RecoverTo never reached the point it reads the undo from")
	}
	b := make([]byte, 1)
	if rerr := w.vol.ReadAt(b, 0); rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatalf("RecoverTo group 1, a release's retry trimming the window as it read: %v (applied group %d, the volume holds group %d's byte)",
			err, w.sec.Stats().Group, b[0])
	}
	if st.Group != 1 || b[0] != 1 {
		t.Fatalf("RecoverTo group 1 reached group %d, the volume holds group %d's byte", st.Group, b[0])
	}
}

// TestTheUndoRangesOfARecoverToAreNotTrimmedByAReleasesRetry: the ranges
// recover --at to group 1 writes back, asked before it (the operator is
// shown them), are read as the owed release's retry trims the history's
// old end: all of them, groups 2 to 6's half MiB. Before, the read was
// refused as outside the window, though the history held group 1 when
// it was asked.
func TestTheUndoRangesOfARecoverToAreNotTrimmedByAReleasesRetry(t *testing.T) {
	w := openTrimRace(t)
	raced := false
	w.sec.testRecovering = func(p history.Point) {
		raced = true
		w.retryTrimmingTheWindow()
	}
	rs, err := w.sec.UndoRanges(w.groupTime(1))
	if !raced {
		t.Fatal("UndoRanges never reached the point it reads the undo from")
	}
	if err != nil {
		t.Fatalf("the ranges recover --at to group 1 writes back, a release's retry trimming the window as they were read: %v", err)
	}
	if len(rs) != trimRaceGroups-1 {
		t.Fatalf("%d ranges, want one for each of groups 2 to %d: %+v", len(rs), trimRaceGroups, rs)
	}
	for _, r := range rs {
		if r.Volume != "vol1" || r.Offset != 0 || r.Length != trimRaceBytes {
			t.Errorf("range %+v, want vol1's first half MiB", r)
		}
	}
}

// TestAViewOfAPastTimeIsNotTrimmedByAReleasesRetry: a read view of group
// 1's time (NAME@TIME, a failover drill's view) opens as the owed
// release's retry trims the history's old end: it reads the volume as
// of group 1. Before, it was refused as outside the window, though the
// history held group 1 when it was asked.
func TestAViewOfAPastTimeIsNotTrimmedByAReleasesRetry(t *testing.T) {
	w := openTrimRace(t)
	raced := false
	w.sec.testPinAtReading = func() {
		raced = true
		w.retryTrimmingTheWindow()
	}
	v, err := w.sec.PinAt(w.groupTime(1))
	if !raced {
		t.Fatal("PinAt never read the undo")
	}
	if err != nil {
		t.Fatalf("a view of group 1, a release's retry trimming the window as it opened: %v", err)
	}
	defer v.Close()
	b := make([]byte, 1)
	if err := v.ReadAt("vol1", b, 0); err != nil {
		t.Fatal(err)
	}
	if v.Group != 1 || b[0] != 1 {
		t.Fatalf("the view of group 1 is of group %d and reads group %d's byte", v.Group, b[0])
	}
}

// TestARestartFinishesARecoverToStoppedPartWayAfterAReleasesRetry: a
// recover --at to group 1 stopped by a read fault after the state file
// named group 1 (the volume still at group 6), then, before the stop,
// the owed release's retry with the window moved past every group but
// the last. The undo between group 1 and the volume is still needed:
// the next open, which finishes the stopped recovery, takes the volume
// to group 1. Before, the retry trimmed it once RecoverTo had let its
// hold go, and the open finished the recovery from the undo it had left
// (the newest groups'): the volume held a later group's byte under a
// state naming group 1.
func TestARestartFinishesARecoverToStoppedPartWayAfterAReleasesRetry(t *testing.T) {
	inj := disk.NewInjector(nil)
	w := openTrimRaceFS(t, inj)
	w.failRecoverToGroup1(t, inj)
	w.reopen(t)
	if g, b := w.sec.Stats().Group, w.volumeByte(t); g != 1 || b != 1 {
		t.Fatalf("opened after a recover --at to group 1 stopped part-way: state at group %d, the volume holds group %d's byte", g, b)
	}
}
