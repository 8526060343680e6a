package history

import (
	"testing"

	"duplex/disk"
)

// A failing retrim's backoff doubles with each retrim that failed in a
// row: a Trim that released part of the files in between (a hold
// stopped it short of the rest) succeeded, and the next failure is the
// first of a new row, tried again after a second. The count of failures
// was kept across it, so a removal refused once more after hours of
// trims that worked waited as long as after all the failures before.
func TestARetrimsBackoffStartsAgainAfterATrimThatReleased(t *testing.T) {
	l, inj := retrimFailed(t)
	// Two more failures in the row, as the retry's timer would run them.
	for range 2 {
		if err := l.trim(0, true); err == nil {
			t.Fatal("a retrim succeeded though every removal fails")
		}
	}
	// The timer's own try is not wanted from here: stopped, or waited for.
	l.mu.Lock()
	if l.retryTimer != nil {
		l.retryTimer.Stop()
		l.retryTimer = nil
	}
	l.mu.Unlock()
	l.retrims.Wait()
	l.mu.Lock()
	before := l.stopped.attempts
	l.mu.Unlock()
	if before < 3 {
		t.Fatalf("%d retrims counted as failed, want 3 or more", before)
	}
	inj.Clear()
	// A Trim that releases the groups before a hold, and is stopped short
	// by it: the removals work again.
	hold, err := l.Hold(Point{Group: 6, Time: 6})
	if err != nil {
		t.Fatal(err)
	}
	first := l.journal().FirstIndex()
	if err := l.Trim(12); err != nil {
		t.Fatal(err)
	}
	if l.journal().FirstIndex() == first {
		t.Fatal("the Trim up to the hold released nothing")
	}
	if _, ok := l.Stopped(); !ok {
		t.Fatal("the hold stopped no Trim")
	}
	// The removals fail again; the let-go's retrim is the first failure
	// since the Trim that worked.
	failedBefore := inj.Injected(disk.OpRemove)
	inj.Inject(disk.Fault{Op: disk.OpRemove})
	hold()
	l.retrims.Wait()
	// Read under the Log's lock, which a retrim's failure is counted
	// under after its removal failed: a retry's timer firing meanwhile
	// adds to both.
	l.mu.Lock()
	attempts := l.stopped.attempts
	failed := inj.Injected(disk.OpRemove) - failedBefore
	l.mu.Unlock()
	if failed == 0 {
		t.Fatal("no removal failed after the hold went")
	}
	if attempts > failed {
		t.Errorf("%d retrims failed since a Trim released part of the files, but the backoff counts %d: the next try waits %v, not %v",
			failed, attempts, min(retrimRetryFirst<<min(attempts-1, 16), retrimRetryMax), min(retrimRetryFirst<<min(failed-1, 16), retrimRetryMax))
	}
}
