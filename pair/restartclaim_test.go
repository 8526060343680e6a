package pair

import "testing"

// TestRestartWithSecondaryDownKeepsConsistencyTime: a primary process that
// restarts with the secondary unreachable has no acknowledged position yet
// (its mover's is zero until the first acknowledgement). A duplex pair whose
// copy's end the secondary applied long ago must keep the consistency time it
// had, and keep it through the auto-suspension that follows: the secondary
// still recovers the volume to it. Reading the zero position as "copy's end
// not recoverable" wipes it, and the suspended pair then reports no
// consistency time until a resync.
func TestRestartWithSecondaryDownKeepsConsistencyTime(t *testing.T) {
	r := newRig(t, 4*twinRegion, 1<<20, "a")
	r.settle()
	r.write("a", 0, 4096)
	r.mv.ship()
	r.mg.promote()
	before := r.pair("a").Consistent
	if before == 0 || r.pair("a").CopyEnd == 0 {
		t.Fatalf("setup: pair %+v, want duplex with a consistency time and a copy's end", r.pair("a"))
	}

	// The primary restarts; the secondary is down, nothing acknowledged
	// to the new process yet.
	r.mv.mu.Lock()
	r.mv.acked, r.mv.connected = 0, false
	r.mv.mu.Unlock()
	if err := r.mg.save(false); err != nil {
		t.Fatal(err)
	}
	r.crash()
	r.mg.promote()
	if got := r.pair("a").Consistent; got != before {
		t.Errorf("after a restart with the secondary down, duplex pair a reports consistency time %d, want %d (the secondary recovers it there)", got, before)
	}
	r.autoSuspendNow()
	r.mg.promote()
	if p := r.pair("a"); p.Consistent != before {
		t.Fatalf("auto-suspended after the restart, pair a reports consistency time %d (since %d), want %d: the secondary holds it consistent as of that, "+
			"yet the pair claims none until a resync", p.Consistent, p.Since, before)
	}
}
