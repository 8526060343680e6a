package pair

import "testing"

// A primary killed in the middle of a resync copies again, once restarted,
// only what the resync had left: the regions its bitmap still marked when it
// was last saved, and those the activity log holds (copies and writes
// captured but not acknowledged), not the whole volume; and the copy ends.
func TestResyncCrashCopiesWhatIsLeft(t *testing.T) {
	withIdle(t, 0)
	const size = 64 * twinRegion // 4 MiB: four activity-log regions
	r := newRig(t, size, 1<<30, "a")
	r.settle()
	// A clean stop and start: the first copy's marks are gone from the log.
	if err := r.mg.Close(true); err != nil {
		t.Fatal(err)
	}
	if err := r.al.Close(); err != nil {
		t.Fatal(err)
	}
	r.openLog()
	r.open()
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	for _, reg := range []int64{2, 5, 9} { // all in the log's first MiB
		r.write("a", reg*twinRegion, 4096)
	}
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	// One region copied and captured, not acknowledged, then the crash.
	r.mg.copyOne(t.Context())
	r.crash()
	p := r.pair("a")
	if p.State != Pending {
		t.Fatalf("after the crash a is %s, want pending", p.State)
	}
	if p.CopyTotal >= size {
		t.Errorf("after the crash the resync copies %d bytes, the whole volume; want what it had left, within the log's first MiB", p.CopyTotal)
	}
	for _, reg := range []int64{2, 5, 9} {
		if !marked(r.pendingRegions("a"), reg*twinRegion) {
			t.Errorf("after the crash region %d, written while suspended, is not to copy", reg)
		}
	}
	r.settle()
	if p := r.pair("a"); p.State != Duplex {
		t.Errorf("a is %s after the resync, want duplex", p.State)
	}
}
