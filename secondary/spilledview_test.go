package secondary

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"duplex/history"
)

// A failover drill reads through a view of the volumes at one group for
// hours while replication goes on: a view that keeps its before images in
// memory is given up once more has changed than MaxViewBytes (256 MiB; a
// few KiB here), and the drill with it (EIO). A view that spills them to a
// scratch file (PinSpilled, PinAtSpilled: what a drill opens) holds in
// memory only their index, and reads the volume as of its group however
// much changed, up to the scratch file's limit; past it, its reads fail,
// never return a mix of states.
func TestSpilledViewOutlivesTheViewBound(t *testing.T) {
	dir := t.TempDir()
	fillVolume(t, dir)
	gate := newTestGate(0)
	r := openGateRigWith(t, dir, gate, historyOf(dir))
	defer r.close(t)
	r.sec.rviews.maxView = 32 << 10
	scratch := func(name string, limit int64) *history.Scratch {
		sc, err := history.CreateScratch(filepath.Join(dir, name), limit)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		return sc
	}
	applyThrough := func(from, to uint64) {
		for seq := from; seq <= to; seq++ {
			r.send(t, seq)
		}
		gate.set(int64(to) * int64(time.Millisecond))
		waitGate(t, "groups applied", func() bool { return r.sec.Stats().Group == to })
	}
	applyThrough(1, 1)
	inMemory, err := r.sec.Pin()
	if err != nil {
		t.Fatal(err)
	}
	defer inMemory.Close()
	spilled, err := r.sec.PinSpilled(scratch("drill", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer spilled.Close()
	// 8 KiB a group: 312 KiB changed since group 1, ten times the bound.
	applyThrough(2, 40)
	if err := inMemory.ReadAt("vol1", make([]byte, 4096), 0); !errors.Is(err, ErrViewGone) {
		t.Fatalf("the view in memory, past its bound: %v", err)
	}
	want := bytes.Repeat([]byte{0xEE}, 78)
	want[0], want[1] = 1, 1
	got := blockBytes(t, func(p []byte, off int64) error { return spilled.ReadAt("vol1", p, off) }, 39)
	if !bytes.Equal(got, want) {
		t.Fatalf("the spilled view of group 1 after 39 more groups reads blocks %v, want %v", got, want)
	}
	// At a past time too: the undo of groups 2..40 read when it opens goes
	// to the scratch file, not memory.
	if _, err := r.sec.PinAt(int64(time.Millisecond)); err == nil {
		t.Fatal("a view in memory of group 1 opened holding the undo of 39 groups, past its bound")
	}
	past, err := r.sec.PinAtSpilled(int64(time.Millisecond), scratch("past", 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer past.Close()
	if got := blockBytes(t, func(p []byte, off int64) error { return past.ReadAt("vol1", p, off) }, 39); past.Group != 1 || !bytes.Equal(got, want) {
		t.Fatalf("the spilled view at 1ms (group %d) reads blocks %v, want group 1 and %v", past.Group, got, want)
	}

	// A scratch file of 16 KiB holds two groups' before images, not three.
	small, err := r.sec.PinSpilled(scratch("small", 16<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	applyThrough(41, 42)
	if err := small.ReadAt("vol1", make([]byte, 4096), 0); err != nil || small.Gone() != nil {
		t.Fatalf("a spilled view within its scratch file: %v, %v", err, small.Gone())
	}
	applyThrough(43, 43)
	if err := small.ReadAt("vol1", make([]byte, 4096), 0); !errors.Is(err, ErrViewGone) || !errors.Is(err, history.ErrScratchFull) {
		t.Fatalf("a spilled view past its scratch file's limit reads: %v", err)
	}
	if small.Gone() == nil {
		t.Fatal("a spilled view past its scratch file's limit is not gone")
	}
	want = append(want, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE)
	for _, v := range []*ReadView{spilled, past} {
		if got := blockBytes(t, func(p []byte, off int64) error { return v.ReadAt("vol1", p, off) }, 42); !bytes.Equal(got, want) {
			t.Fatalf("the spilled view of group 1 after 42 more groups reads blocks %v, want %v", got, want)
		}
	}
}
