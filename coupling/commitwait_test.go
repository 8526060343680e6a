package coupling

import (
	"testing"
	"time"
)

// Once Wait returns, a clock up to Uncertainty behind this one reads past
// the last stamp: what a host stamps after the acknowledgement is later.
func TestCommitWaitOutlastsTheUncertainty(t *testing.T) {
	for _, u := range []time.Duration{100 * time.Microsecond, time.Millisecond} {
		stamp := time.Now().UnixNano()
		c := &CommitWait{Uncertainty: u, Last: func() int64 { return stamp }}
		c.Wait()
		behind := time.Now().UnixNano() - int64(u)
		if behind <= stamp {
			t.Errorf("uncertainty %s: a clock %s behind reads %d after Wait, not past the stamp %d", u, u, behind, stamp)
		}
	}
	var none *CommitWait
	none.Wait()
	(&CommitWait{Last: func() int64 { return 1 << 62 }}).Wait() // 0: no wait
}
