package pair

import (
	"os"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/bitmap"
	"duplex/recordset"
)

// The session's changes put off for the timer's lease are kept until made
// (see leasewait.go): the tests here show that what is kept meanwhile
// neither acts again at each look of the session's watcher nor lets a
// region of a write acknowledged go unmarked, so that a kill after the
// disk answers still copies every region written.

// copiedAfterAKill says whether a start after a kill now would copy vol's
// region at off: the activity log on disk marks it (a duplex pair's
// recovery, a suspended one's bitmap, a resync's copy take its marks), or
// the bitmap saved for the pair does.
func (r *leaseRig) copiedAfterAKill(vol string, off int64) bool {
	r.t.Helper()
	// The log's next write, for another region, carries what it holds.
	if err := r.al.Stick("b", leaseRigSize-leaseRigLogRegion, 4096); err != nil {
		r.t.Fatal(err)
	}
	marks, err := actlog.ReadMarks(nil, r.alPath)
	if err != nil {
		r.t.Fatal(err)
	}
	if regionsCover(marks[vol], off) {
		return true
	}
	b, err := os.ReadFile(r.mg.bitmapPath(vol))
	if err != nil {
		return false
	}
	bm, err := bitmap.Decode(b, leaseRigSize)
	return err == nil && marked(bm, off)
}

// TestACopyGivenUpWhoseSuspensionWaitsLetsTheNextCopyBe: the mover gives
// up a copy of a's resync while the timer's lease hangs, and a's
// suspension for it is put off. The copy given up is kept for that
// suspension, but its copier was let go once: the copies of a tried again
// meanwhile, waiting for their stamps as every update does, are not cut
// short again at each look of the session's watcher (each cut a copy
// failure, its copy left behind waiting for the lease). Once the disk
// answers, a is suspended, the region given up in its bitmap, and a kill
// then still copies it and the region written before a's resume.
func TestACopyGivenUpWhoseSuspensionWaitsLetsTheNextCopyBe(t *testing.T) {
	r := newLeaseRigLogged(t, 64<<20, true)
	r.ss.SetActivityLog(r.al)
	r.stop()
	<-r.runDone
	if err := r.mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	const written, gaveUp = 2 * leaseRigLogRegion, 5 * leaseRigLogRegion
	r.write("a", written)
	if err := r.mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	ts := r.tm.Now()
	r.hang()
	r.mv.mu.Lock()
	r.mv.abandoned = append(r.mv.abandoned, recordset.Update{Volume: "a", Kind: recordset.KindCopy, Offset: gaveUp, Length: 4096, Timestamp: ts})
	r.mv.mu.Unlock()
	r.run()
	// The copier tries a's copy at once, and again after each failure,
	// 100 ms, 200 ms, 400 ms, 800 ms on.
	time.Sleep(1600 * time.Millisecond)
	if n := r.mg.CopyFailures(); n > 1 {
		t.Errorf("a's copy failed %d times while the suspension for the copy given up waits for the lease, want once at most "+
			"(the copier let go for the copy given up, not every copy of a after it)", n)
	}
	r.answersMeanwhile("a's suspension for the copy given up waits", Pending)
	r.answered()
	a := r.waitSuspended("a", false)
	if a.Reason != reasonCopyReadHung {
		t.Errorf("a suspended: %q, want %q", a.Reason, reasonCopyReadHung)
	}
	if bm := r.ss.Tracking("a"); !marked(bm, gaveUp) {
		t.Errorf("a suspended: the region of its copy given up, at %d, is not in its bitmap", gaveUp)
	}
	// The region written is in a's bitmap too, or was copied (captured
	// ahead of the suspension, marked in the log until acknowledged).
	for _, off := range []int64{written, gaveUp} {
		for end := time.Now().Add(10 * time.Second); !r.copiedAfterAKill("a", off); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(end) {
				t.Errorf("a's region at %d: a kill now would not copy it (neither the activity log on disk nor a's saved bitmap marks it)", off)
				break
			}
		}
	}
}
