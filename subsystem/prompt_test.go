package subsystem

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/sidefile"
)

// TestPromptSaysNoToAWriteThatWouldWait: Prompt promises a write only when
// it would wait for nothing but the volume: not for the activity log's
// write of a fresh region, not for an overlapping update under way, not for
// the sidefile's pacing or room.
func TestPromptSaysNoToAWriteThatWouldWait(t *testing.T) {
	const n = 4096
	f := newFixture(t, 64*sidefile.Cost(n))
	if !f.ss.Prompt("v0", 0, n) {
		t.Fatal("no activity log, an empty sidefile: not promised")
	}
	logTo(t, f)
	if f.ss.Prompt("v0", 0, n) {
		t.Fatal("a region not yet marked in the activity log: promised")
	}
	data := bytes.Repeat([]byte{1}, n)
	if err := f.ss.Write(context.Background(), "v0", data, 0); err != nil {
		t.Fatal(err)
	}
	if !f.ss.Prompt("v0", n, n) {
		t.Fatal("a region marked on disk: not promised")
	}

	held, release := make(chan struct{}), make(chan struct{})
	f.ss.beforeVolumeWrite = func(string) {
		close(held)
		<-release
	}
	written := make(chan error, 1)
	go func() { written <- f.ss.Write(context.Background(), "v0", data, 0) }()
	<-held
	if f.ss.Prompt("v0", n/2, n) {
		t.Error("an overlapping write under way: promised")
	}
	if !f.ss.Prompt("v0", 2*n, n) {
		t.Error("a write beside one under way: not promised")
	}
	close(release)
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	f.ss.beforeVolumeWrite = nil

	f.side.SetPacing(sidefile.Pacing{Start: 0.01, MaxDelay: time.Millisecond})
	if f.ss.Prompt("v0", n, n) {
		t.Error("the sidefile pacing: promised")
	}
	f.side.SetPacing(sidefile.Pacing{})
	for i := 0; f.side.Prompt(sidefile.Cost(n)); i++ {
		if err := f.ss.Write(context.Background(), "v0", data, 0); err != nil {
			t.Fatal(err)
		}
	}
	if f.ss.Prompt("v0", n, n) {
		t.Error("the sidefile full: promised")
	}
}

// logTo has f's subsystem mark its writes in an activity log of its own,
// which it returns.
func logTo(t *testing.T, f *fixture) *actlog.Log {
	t.Helper()
	al, _, err := actlog.Open(filepath.Join(t.TempDir(), "activity.log"), map[string]int64{"v0": volSize}, actlog.DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	f.ss.SetActivityLog(actlog.WritePath{Log: al})
	return al
}

// TestPromptSaysNoToAWriteOutOfRange: a range past the volume, or whose
// offset is negative (an NBD offset of 2^63 or more), is never promised,
// and asking does not panic with the activity log on.
func TestPromptSaysNoToAWriteOutOfRange(t *testing.T) {
	const n = 4096
	f := newFixture(t, 64*sidefile.Cost(n))
	logTo(t, f)
	if err := f.ss.Write(context.Background(), "v0", make([]byte, n), 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		off int64
		n   int
	}{{-1 << 63, n}, {-n, n}, {-1, 2}, {volSize, n}, {volSize - n/2, n}, {1<<63 - n/2, n}, {0, -1}} {
		if f.ss.Prompt("v0", c.off, c.n) {
			t.Errorf("[%d, +%d) of a %d-byte volume: promised", c.off, c.n, volSize)
		}
	}
	if f.ss.Prompt("nosuch", 0, n) {
		t.Error("a volume the subsystem does not have: promised")
	}
}

// TestWriteNowCapturesNothingWhereItWouldWait: a write that must not wait
// (a promise's, whose state moved since) is captured and written where
// nothing holds it; where the sidefile has no room or paces, a region's
// mark must be written, an overlapping update is under way, or it is
// larger than one update, WriteNow says so and captures nothing: no room
// taken, no mark written, nothing written to the volume.
func TestWriteNowCapturesNothingWhereItWouldWait(t *testing.T) {
	const n = 4096
	f := newFixture(t, 64*sidefile.Cost(n))
	al := logTo(t, f)
	nothing := func(what string, off int64, size int) {
		t.Helper()
		before, syncs, marked := f.side.Stats(), al.Syncs(), al.Marked()
		data := bytes.Repeat([]byte{9}, size)
		wait, err := f.ss.WriteNow("v0", data, off)
		if !wait || err != nil {
			t.Fatalf("%s: wait %v, %v", what, wait, err)
		}
		after := f.side.Stats()
		if after.Used != before.Used || after.Captured != before.Captured || al.Syncs() != syncs || al.Marked() != marked {
			t.Errorf("%s: sidefile %d bytes %d updates, log %d syncs %d marked, before %d, %d, %d, %d",
				what, after.Used, after.Captured, al.Syncs(), al.Marked(), before.Used, before.Captured, syncs, marked)
		}
		if !bytes.Equal(data, bytes.Repeat([]byte{9}, size)) {
			t.Errorf("%s: the caller's data changed", what)
		}
		if got := readVol(t, f.vols["v0"], off, n); got[0] == 9 {
			t.Errorf("%s: written to the volume", what)
		}
	}
	nothing("a region not yet marked in the activity log", 0, n)
	if err := f.ss.Write(context.Background(), "v0", make([]byte, n), 0); err != nil {
		t.Fatal(err)
	}
	if wait, err := f.ss.WriteNow("v0", bytes.Repeat([]byte{1}, n), n); wait || err != nil {
		t.Fatalf("a region marked on disk, room: wait %v, %v", wait, err)
	}
	if st := f.side.Stats(); st.Captured != 2 || readVol(t, f.vols["v0"], n, n)[0] != 1 {
		t.Fatalf("a write served now: %d updates captured, volume %x", st.Captured, readVol(t, f.vols["v0"], n, 1))
	}

	held, release := make(chan struct{}), make(chan struct{})
	f.ss.beforeVolumeWrite = func(string) {
		close(held)
		<-release
	}
	written := make(chan error, 1)
	go func() { written <- f.ss.Write(context.Background(), "v0", make([]byte, n), 2*n) }()
	<-held
	f.ss.beforeVolumeWrite = nil
	nothing("an overlapping write under way", 2*n+n/2, n)
	close(release)
	if err := <-written; err != nil {
		t.Fatal(err)
	}

	nothing("larger than one update", 0, f.ss.pieceSize()+n)
	f.side.SetPacing(sidefile.Pacing{Start: 0.01, MaxDelay: time.Millisecond})
	nothing("the sidefile pacing", n, n)
	f.side.SetPacing(sidefile.Pacing{})
	f.side.Take(f.side.Limit())
	nothing("the sidefile full", n, n)
	f.side.Release(f.side.Limit())
	if wait, err := f.ss.WriteNow("v0", bytes.Repeat([]byte{2}, n), n); wait || err != nil {
		t.Fatalf("room again: wait %v, %v", wait, err)
	}
}
