package history

import (
	"testing"
	"time"

	"duplex/disk"
)

// The backoff of a failing retrim doubles with each retrim that failed, not
// with each time one is scheduled: a retry whose timer fires while a
// reader of the past holds the old end runs no Trim, and the let-go of
// that hold schedules it again. Counted as an attempt, each such hold (a
// view of a past time opened across the timer) doubled the wait after a
// single failure, up to a minute, the files left over their bound the
// longer.
func TestARetrimsBackoffCountsFailuresNotSchedules(t *testing.T) {
	l, inj := retrimFailed(t)
	for round := 0; round < 3; round++ {
		p, ok := l.Oldest()
		if !ok {
			t.Fatal("no point")
		}
		hold, err := l.Hold(p)
		if err != nil {
			t.Fatal(err)
		}
		// The retry's timer fires while the hold stops it: no Trim runs.
		deadline := time.Now().Add(2 * time.Minute)
		for {
			l.mu.Lock()
			fired := l.retryTimer == nil
			l.mu.Unlock()
			if fired {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the retry's timer did not fire within 2 minutes")
			}
			time.Sleep(5 * time.Millisecond)
		}
		hold()
		l.retrims.Wait()
	}
	// Every retrim that ran failed at the first segment it removed: one
	// injected fault each.
	failed := inj.Injected(disk.OpRemove)
	l.mu.Lock()
	attempts := l.stopped.attempts
	timer := l.retryTimer != nil
	l.mu.Unlock()
	if !timer {
		t.Fatal("no retry scheduled after the last hold went")
	}
	if attempts != failed {
		t.Errorf("%d retrims failed, but the backoff counts %d attempts: the next try waits %v, not %v", failed, attempts,
			min(retrimRetryFirst<<min(attempts-1, 16), retrimRetryMax), min(retrimRetryFirst<<min(failed-1, 16), retrimRetryMax))
	}
}
