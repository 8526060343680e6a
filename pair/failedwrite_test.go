package pair

import (
	"fmt"
	"strings"
	"syscall"
	"testing"

	"duplex/subsystem"
)

// TestAWriteTheVolumeFailsSuspendsItsPair: a write to a's volume is
// captured, then the volume fails it (EIO). The secondary gets its data,
// which the volume may never have taken: a is suspended, saying why, the
// write's region in its bitmap for the resume to copy again; b stays
// duplex. Once resumed, a is duplex again.
func TestAWriteTheVolumeFailsSuspendsItsPair(t *testing.T) {
	r := newRig(t, 4*twinRegion, 8<<20, "a", "b")
	r.settle()
	r.write("a", 2*twinRegion, 4096)
	r.ss.mu.Lock()
	r.ss.failed = append(r.ss.failed, subsystem.FailedWrite{Volume: "a", Offset: 2 * twinRegion, Length: 4096,
		Err: fmt.Errorf("volume a: write 4096 at %d: %w", 2*twinRegion, syscall.EIO)})
	r.ss.mu.Unlock()
	r.mv.ship()
	r.mg.suspendWriteFailed()
	a := r.pair("a")
	if a.State != Suspended || a.Auto || !strings.Contains(a.Reason, "write") || !strings.Contains(a.Reason, syscall.EIO.Error()) {
		t.Fatalf("pair a, a write its volume failed: %+v, want suspended, not to resume by itself, its reason naming the write's error", a)
	}
	if !marked(r.ss.Tracking("a"), 2*twinRegion) {
		t.Fatal("the region of the write the volume failed is not in a's bitmap")
	}
	if b := r.pair("b"); b.State != Duplex {
		t.Fatalf("pair b: %+v, want duplex", b)
	}
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	if got := r.pendingRegions("a").Count(); got != 1 {
		t.Fatalf("a resumed copies %d regions, want the one the failed write was in", got)
	}
	r.settle()
}
