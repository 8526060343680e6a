package pair

import (
	"testing"

	"duplex/bitmap"
)

// TestUncleanStopWithoutActivityLogKeepsASuspendedPairSuspended: the
// operator suspends a pair (say, to keep the secondary's copy as of that
// point while something risky runs at the primary). The primary is
// killed, and its restart cannot open the activity log. It copies every pair in
// full, since writes acknowledged just before the kill may be marked
// nowhere; for the suspended pair that means its whole volume goes in its
// bitmap, to be copied when the operator resumes it. Open instead makes it
// pending and starts the copy at once: the suspension the operator asked
// for (and that status reported) is gone, and the resync overwrites the
// secondary's image of the suspension with nobody asking.
func TestUncleanStopWithoutActivityLogKeepsASuspendedPairSuspended(t *testing.T) {
	r := newRig(t, 4*twinRegion, 8<<20, "a", "b")
	r.settle()
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	r.mv.ship()
	r.mg.promote()
	r.write("a", 0, 4096) // in a's bitmap
	if err := r.mg.save(false); err != nil {
		t.Fatal(err)
	}

	// kill -9; the restarted primary cannot open its activity log (EIO,
	// a file left with the wrong owner), so it copies every pair in full.
	r.ss.mu.Lock()
	r.ss.tracking, r.ss.al = map[string]*bitmap.Bitmap{}, nil
	r.ss.mu.Unlock()
	r.mv.mu.Lock()
	r.mv.al = nil
	r.mv.mu.Unlock()
	r.opts.ActivityLog, r.opts.Recovered = nil, nil
	r.open()
	if p := r.pair("a"); p.State != Suspended {
		t.Fatalf("pair a, suspended by the operator, is %s after an unclean restart without an activity log (pair %+v): "+
			"want it suspended, its whole volume to copy when resumed", p.State, p)
	}
}
