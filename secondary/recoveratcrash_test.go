package secondary

import (
	"bytes"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"testing"
	"time"

	"duplex/apply"
	"duplex/disk"
	"duplex/recordset"
	"duplex/volume"
)

// regionBytes is the size of the region each group of the crash tests
// writes: larger than the history's read buffer, so that a fault can stop
// an undo between two groups' records.
const regionBytes = 128 << 10

// openStoppedFS is openStopped with the journal, the state file and the
// history on fsys.
func openStoppedFS(t *testing.T, dir string, hist HistoryConfig, fsys disk.FS) (*Secondary, *volume.Volume) {
	t.Helper()
	v, err := volume.Open(filepath.Join(dir, "vol1.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := Open(Config{Session: "s", Subsystems: []string{"ss1"}, Volumes: map[string]*volume.Volume{"vol1": v},
		JournalDir: filepath.Join(dir, "journal"), StatePath: filepath.Join(dir, "state.json"), History: hist, FS: fsys,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return sec, v
}

// regions returns the first byte of the regions groups 1..n write.
func regions(t *testing.T, v *volume.Volume, n int) []byte {
	t.Helper()
	var out []byte
	b := make([]byte, 1)
	for k := 1; k <= n; k++ {
		if err := v.ReadAt(b, int64(k*regionBytes)); err != nil {
			t.Fatal(err)
		}
		out = append(out, b[0])
	}
	return out
}

// interruptRecoverTo applies groups 1..n, each writing its own region,
// fences the secondary, and runs a recover --at to group 1 that a read
// fault in the history stops after the undo of group 2 (the oldest after
// the target) reached the volume: the state file names group 1, the
// volume is part-way back to it.
func interruptRecoverTo(t *testing.T, dir string, hist HistoryConfig, n int) {
	t.Helper()
	r := openGateRigWith(t, dir, nil, hist)
	for k := uint64(1); k <= uint64(n); k++ {
		r.sendSet(t, k, []recordset.Update{{Volume: "vol1", Kind: recordset.KindWrite, Offset: k * regionBytes, Length: regionBytes,
			Data: bytes.Repeat([]byte{byte(k)}, regionBytes)}})
	}
	waitGate(t, "every group applied", func() bool { return r.sec.Stats().Group == uint64(n) })
	if _, err := r.sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	r.close(t)

	inj := disk.NewInjector(nil)
	sec, v := openStoppedFS(t, dir, hist, inj)
	inj.Inject(disk.Fault{Op: disk.OpRead, Under: hist.Dir, Skip: 4})
	if _, err := sec.RecoverTo(int64(time.Millisecond)); err == nil {
		t.Fatal("the history's read fault did not stop the first recovery")
	}
	if inj.Injected(disk.OpRead) == 0 {
		t.Fatal("no read of the history failed")
	}
	got := regions(t, v, n)
	t.Logf("interrupted: regions of groups 1..%d hold % x", n, got)
	if got[1] != 0xEE || got[n-1] != byte(n) {
		t.Fatalf("the interrupted undo did not stop between groups: regions % x (tune the fault's Skip)", got)
	}
	if err := sec.Close(); err != nil {
		t.Fatal(err)
	}
	v.Close()
}

// openAfterInterruptedRecoverTo opens, stopped, a secondary whose recover
// --at of n groups interruptRecoverTo stopped part-way.
func openAfterInterruptedRecoverTo(t *testing.T, n int) (*Secondary, *volume.Volume) {
	t.Helper()
	return openAfterInterruptedRecoverToWith(t, n, false)
}

// openAfterInterruptedRecoverToWith is openAfterInterruptedRecoverTo,
// with off the history turned off in the config since: only the directory
// of the history kept before is known.
func openAfterInterruptedRecoverToWith(t *testing.T, n int, off bool) (*Secondary, *volume.Volume) {
	t.Helper()
	dir := t.TempDir()
	fillVolume(t, dir)
	hist := historyOf(dir)
	interruptRecoverTo(t, dir, hist, n)
	open := hist
	if off {
		open = HistoryConfig{Left: hist.Dir}
	}
	sec, v := openStopped(t, dir, open)
	t.Cleanup(func() {
		sec.Close()
		v.Close()
	})
	return sec, v
}

// groupRegions is what regions returns for volumes at group g of n.
func groupRegions(g uint64, n int) []byte {
	want := make([]byte, n)
	for k := range want {
		want[k] = 0xEE
		if uint64(k+1) <= g {
			want[k] = byte(k + 1)
		}
	}
	return want
}

// A recover --at stopped part-way through writing the before images back
// (a kill -9, here a read of the history failing) leaves the volumes
// neither at the group they were at nor at the one it was taking them to.
// Run again, for the same time or for another, it must leave the volumes
// at one point of the history, the one it reports. The state file still
// named the applied group, so a run for a later time than the first undid
// only the groups after that time: the regions of the groups between the
// two times that the first run had written back stayed as they were
// before those groups, under a report of the later group.
func TestRecoverToRunAgainAfterAnInterruptedUndo(t *testing.T) {
	const n = 5
	sec, v := openAfterInterruptedRecoverTo(t, n)
	// Run again, for group 3's time.
	st, err := sec.RecoverTo(int64(3 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	got, want := regions(t, v, n), groupRegions(st.Group, n)
	if !bytes.Equal(got, want) {
		t.Fatalf("run again for group 3's time: reports group %d, regions of groups 1..%d hold % x, want % x (group %d's)",
			st.Group, n, got, want, st.Group)
	}
}

// A recover --at stopped part-way leaves a state file that names its
// point over volumes part-way back to it. What starts next need not be
// recover --at: the secondary daemon, a plain recover and promote all open
// the secondary, and served or promoted the volumes as they were, under
// the point's name, a mix of two states the primary never had. Open must
// finish taking them to the point, or refuse. So too with history turned
// off in the config since ([secondary] history = 0): kept no history, the
// secondary said nothing; the history kept before is still on disk, and
// the undo is finished from it.
func TestOpenAfterAnInterruptedRecoverTo(t *testing.T) {
	for _, off := range []bool{false, true} {
		t.Run(map[bool]string{false: "history on", true: "history off"}[off], func(t *testing.T) {
			const n = 5
			sec, v := openAfterInterruptedRecoverToWith(t, n, off)
			st := sec.Stats()
			if got, want := regions(t, v, n), groupRegions(st.Group, n); !bytes.Equal(got, want) {
				t.Fatalf("opened after an interrupted recover --at: at group %d, regions of groups 1..%d hold % x, want % x (group %d's)",
					st.Group, n, got, want, st.Group)
			}
			got := make([]byte, n)
			for k := 1; k <= n; k++ {
				if err := sec.ReadAt("vol1", got[k-1:k], int64(k*regionBytes)); err != nil {
					t.Fatal(err)
				}
			}
			if want := groupRegions(st.Group, n); !bytes.Equal(got, want) {
				t.Fatalf("opened after an interrupted recover --at: at group %d, reads of groups 1..%d's regions % x, want % x", st.Group, n, got, want)
			}
			if st.History == off {
				t.Errorf("opened with history off %v: keeps one: %v", off, st.History)
			}
		})
	}
}

// A coupled secondary whose Gate's limit is inside a group formed over many
// intervals holds the group through the limit, and the group's undo, in
// steps, was captured before its first part was applied: a view of a time
// before the limit must read the point at or before it, laid over the part
// applied. Taking the applied group (the one before) for what the volumes
// hold, a view of any time after that group's was opened over the volumes
// as they are, as of the group's time: it read the writes stamped up to
// the limit, after the time asked for.
func TestReadViewOfAStepBeforeTheGateLimit(t *testing.T) {
	const interval = stepInterval
	ms := int64(time.Millisecond)
	h := manyIntervalsThroughTheGateLimit(t)
	r, all, limit := h.r, h.all, h.limit
	defer r.close(t)

	for _, at := range []int64{57 * ms, 99 * ms, 3 * ms} {
		v, err := r.sec.PinAt(at)
		if err != nil {
			t.Fatalf("a view of %v, the Gate's limit at %v: %v", time.Duration(at), time.Duration(limit), err)
		}
		img := firstBytes(t, func(p []byte, off int64) error { return v.ReadAt("vol1", p, off) }, manyBlocks)
		if v.Time > at || v.Time <= at-int64(interval) && at > 5*ms {
			t.Errorf("a view of %v reads %v", time.Duration(at), time.Duration(v.Time))
		}
		if want := imageAt(all, manyBlocks, v.Time); !bytes.Equal(img, want) {
			t.Errorf("a view of %v reads %v, but the blocks hold\n%v, want the writes through it\n%v", time.Duration(at), time.Duration(v.Time), img, want)
		}
		v.Close()
	}
}

// recover --at a time before a coupled secondary's Gate limit, inside the
// group applied in part, reaches the step at or before it, within an
// interval of it, as for a group applied whole, and run again after a
// restart leaves the same: it undid the whole group and reached the group
// before, however long ago, leaving out writes stamped more than an
// interval before the time.
func TestRecoverToAStepBeforeTheGateLimit(t *testing.T) {
	const interval = stepInterval
	ms := int64(time.Millisecond)
	h := manyIntervalsThroughTheGateLimit(t)
	dir, hist, r, all, limit := h.dir, h.hist, h.r, h.all, h.limit
	if _, err := r.sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	at := 57 * ms
	st, err := r.sec.RecoverTo(at)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, st apply.State, img []byte) {
		t.Helper()
		if st.Time > at || st.Time <= at-int64(interval) {
			t.Errorf("%s %v, the Gate's limit at %v: reached group %d as of %v, not within an interval before it",
				what, time.Duration(at), time.Duration(limit), st.Group, time.Duration(st.Time))
		}
		if want := imageAt(all, manyBlocks, st.Time); !bytes.Equal(img, want) {
			t.Errorf("%s %v: reached %v, but the blocks hold\n%v, want the writes through it\n%v", what, time.Duration(at), time.Duration(st.Time), img, want)
		}
	}
	check("recover --at", st, firstBytes(t, func(p []byte, off int64) error { return r.sec.ReadAt("vol1", p, off) }, manyBlocks))
	r.close(t)

	sec, v := openStopped(t, dir, hist)
	defer v.Close()
	defer sec.Close()
	st2, err := sec.RecoverTo(at)
	if err != nil {
		t.Fatal(err)
	}
	if st2.Group != st.Group || st2.Time != st.Time {
		t.Errorf("run again after a restart: group %d as of %v, the first run reached group %d as of %v", st2.Group, time.Duration(st2.Time), st.Group, time.Duration(st.Time))
	}
	check("recover --at, again,", st2, firstBytes(t, func(p []byte, off int64) error { return sec.ReadAt("vol1", p, off) }, manyBlocks))
}

// stepInterval is the history's interval in manyIntervalsThroughTheGateLimit.
const stepInterval = 10 * time.Millisecond

// heldThroughTheLimit is a coupled secondary whose Gate holds a group of
// many intervals part-way: see manyIntervalsThroughTheGateLimit.
type heldThroughTheLimit struct {
	dir   string
	hist  HistoryConfig
	r     *gateRig
	all   []stampedWrite // every write sent
	limit int64          // the Gate's
}

// manyIntervalsThroughTheGateLimit opens a coupled gate rig in a new
// directory, its history kept at stepInterval, sends sendManyIntervals's
// groups, and sets the Gate's limit to 100 ms inside group 2: group 1 is
// applied, group 2 through the limit.
func manyIntervalsThroughTheGateLimit(t *testing.T) heldThroughTheLimit {
	t.Helper()
	dir := t.TempDir()
	fillVolume(t, dir)
	hist := historyOf(dir)
	hist.Interval = stepInterval
	gate := newTestGate(0)
	r := openGateRigConfig(t, dir, gate, func(c *Config) { c.History = hist })
	all := r.sendManyIntervals(t)
	waitGate(t, "groups 1 and 2 journaled", func() bool { return r.sec.Stats().JournaledGroup >= 2 })
	limit := 100 * int64(time.Millisecond)
	gate.set(limit)
	waitGate(t, "group 2 through the limit", func() bool { st := r.sec.Stats(); return st.Group == 1 && st.Time == limit })
	return heldThroughTheLimit{dir: dir, hist: hist, r: r, all: all, limit: limit}
}

// The window status shows ends at the newest point recover --at and views
// reach. A coupled secondary whose Gate's limit is inside a group holds
// that group through the limit, and both reach its steps up to the limit:
// status ended the window at the applied group's time, the group before,
// however long before the limit, so that an operator reading it would
// not ask for a time recover --at reaches.
func TestHistoryWindowEndsAtTheNewestPointBeforeTheGateLimit(t *testing.T) {
	h := manyIntervalsThroughTheGateLimit(t)
	r := h.r
	defer r.close(t)
	newest := r.sec.Stats().HistoryNewest
	v, err := r.sec.PinAt(newest)
	if err != nil {
		t.Fatal(err)
	}
	if v.Time != newest {
		t.Errorf("a view of the window's newest time %v reads %v", time.Duration(newest), time.Duration(v.Time))
	}
	v.Close()
	if _, err := r.sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	st, err := r.sec.RecoverTo(math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	if st.Time != newest {
		t.Errorf("status ends the history window at %v, the Gate's limit at %v; recover --at a later time reaches %v (group %d)",
			time.Duration(newest), time.Duration(h.limit), time.Duration(st.Time), st.Group)
	}
}
