package site

import (
	"strings"
	"testing"
	"time"

	"duplex/control"
)

// TestAPrimarySaysASecondaryRetryingItsDiskRefusesItForNow: while the
// secondary is stopped on a disk fault it retries, the primary's status
// says each pair is refused and that the refusal passes, so that `pair
// --wait` waits through it; once the secondary is back, neither.
func TestAPrimarySaysASecondaryRetryingItsDiskRefusesItForNow(t *testing.T) {
	r := retryingSecondaryAtStop(t, 10*time.Second, 2*time.Second)
	st := r.p.Status()
	if !st.RefusalPasses {
		t.Errorf("the status of a primary whose secondary retries its disk says the refusal lasts (last_error %q)", st.LastError)
	}
	for _, v := range st.Volumes {
		if !strings.HasPrefix(v.Note, control.RefusedNote) {
			t.Errorf("volume %s: note %q; want it refused", v.Name, v.Note)
		}
		if v.Refused == nil || !*v.Refused {
			t.Errorf("volume %s: refused %v; want true", v.Name, v.Refused)
		}
	}
	r.in.Clear()
	waitFor(t, 30*time.Second, "the secondary to take the primary again", func() bool {
		st := r.p.Status()
		return st.Link == "connected" && !st.RefusalPasses
	})
	for _, v := range r.p.Status().Volumes {
		if v.Refused == nil || *v.Refused {
			t.Errorf("volume %s of a primary its secondary takes again: refused %v; want false", v.Name, v.Refused)
		}
	}
}
