package history

import (
	"bytes"
	"errors"
	"math"
	"math/rand"
	"testing"
	"time"

	"duplex/disk"
)

// A reader that holds the point it reads back to (a recover --at's undo,
// a view of a past time as it opens) reads all of its undo while a Trim
// comes between its choice of the point and its read, a Trim that would
// drop it (every group older than the window): Trim keeps what the hold
// needs, and drops it once the hold is let go. A hold asked for once the
// undo went fails as a point outside the window does. Without the hold,
// the read failed (TestOverlaysTrimmedWhileRead).
func TestATrimKeepsTheUndoAHoldReads(t *testing.T) {
	now := time.Unix(1000, 0)
	fsys := &trimOnOpen{FS: disk.OS}
	l, err := Open(t.TempDir(), Options{Window: 10 * time.Second, FS: fsys, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	v := &mem{make([]byte, 1<<20)}
	rand.New(rand.NewSource(3)).Read(v.b)
	orig := bytes.Clone(v.b)
	for g := uint64(1); g <= 5; g++ {
		if err := l.Capture(Header{Group: g, Time: time.Unix(int64(g), 0).UnixNano()}, []Range{{"v", 0, 600 << 10}}, map[string]Source{"v": v}); err != nil {
			t.Fatal(err)
		}
		// Each group changes what the next one's undo holds.
		for i := range 600 << 10 {
			v.b[i] ^= byte(g)
		}
	}
	p, ok := l.At(time.Unix(1, 0).UnixNano())
	if !ok || p.Group != 1 {
		t.Fatalf("point at 1 s: group %d (%v)", p.Group, ok)
	}
	release, err := l.Hold(p)
	if err != nil {
		t.Fatal(err)
	}
	trimmed := false
	fsys.mu.Lock()
	fsys.hook = func() {
		if err := l.Trim(5); err != nil {
			t.Error(err)
		}
		trimmed = true
	}
	fsys.mu.Unlock()
	if err := l.Undo(p, map[string]Sink{"v": v}); err != nil {
		t.Fatalf("Undo to group 1, held, with a Trim of every group older than the window while it reads: %v", err)
	}
	if !trimmed {
		t.Fatal("no segment was opened for reading")
	}
	// Undo to group 1 leaves the volume as group 2's capture read it:
	// the original content changed by group 1.
	want := bytes.Clone(orig)
	for i := range 600 << 10 {
		want[i] ^= 1
	}
	if !bytes.Equal(v.b, want) {
		t.Fatal("Undo to group 1 left the volume other than group 1 left it")
	}
	if _, err := l.Ranges(p); err != nil {
		t.Fatalf("Ranges after group 1, held, after the Trim: %v", err)
	}
	release()
	release() // let go twice: nothing more
	if err := l.Trim(5); err != nil {
		t.Fatal(err)
	}
	if o, _ := l.Oldest(); o.Group <= p.Group+1 {
		t.Fatalf("the hold let go, Trim left group %d, the oldest: it drops the groups older than the window", o.Group)
	}
	if _, err := l.Hold(p); !errors.Is(err, ErrOutside) {
		t.Fatalf("a hold of group 1 once its undo went: %v, want ErrOutside", err)
	}
	if _, err := l.Overlays(p, Whole(math.MaxUint64), 64<<20, nil, nil); !errors.Is(err, ErrOutside) {
		t.Fatalf("Overlays of group 1 once its undo went: %v, want ErrOutside", err)
	}
}
