package e2e

import (
	"strings"
	"testing"
	"time"

	"duplex/pair"
	"duplex/recordset"
	"duplex/site"
)

// TestSecondaryWithSmallerLimitsReceivesEverything: a secondary that
// accepts less in a record set than the defaults (configured or built so)
// says so in its Welcome, and the primary forms every record set within
// what it announced: the initial copy and a burst of the largest updates
// arrive, where a primary assuming the defaults would send record sets the
// secondary refuses, again and again.
func TestSecondaryWithSmallerLimitsReceivesEverything(t *testing.T) {
	t.Parallel()
	const volSize = 16 << 20
	cfg := newOpsConfig(t, volSize, 64<<20, time.Minute)
	s := &opsSession{t: t, cfg: cfg, net: newMemNet()}
	// Room for one update of the largest size, and little more.
	s.startSecondaryWith(site.SecondaryOptions{
		Limits:   recordset.Limits{MaxHeader: 16 << 10, MaxPayload: 5 << 20, MaxRecords: 256},
		MaxFrame: 6 << 20,
	})
	s.startPrimary()
	t.Cleanup(func() {
		s.stopPrimary()
		s.stopSecondary()
	})
	for _, name := range cfg.VolumeNames() {
		p := s.waitStateOr(name, pair.Duplex, time.Minute)
		if p.State != pair.Duplex {
			t.Fatalf("%s still %s after a minute: the secondary's limits were not kept (last error %q, %d refusals)",
				name, p.State, s.prim.Mover().Stats().LastError, s.prim.Mover().Stats().Refusals)
		}
	}
	// A write of 8 MiB is captured as two updates of the largest size in
	// one drain: one record set of the defaults, two within the limits.
	buf := make([]byte, 8<<20)
	for i := range 4 {
		for j := range buf {
			buf[j] = byte(i + j)
		}
		if err := s.prim.Write(t.Context(), "vol1", buf, int64(i%2)*int64(len(buf))); err != nil {
			t.Fatal(err)
		}
	}
	s.assertImagesEqual()
	if st := s.prim.Mover().Stats(); st.Refusals != 0 {
		t.Errorf("the secondary refused %d sessions: %s", st.Refusals, st.LastRefusal)
	}
}

// TestSecondaryLimitsTooSmallForTheLargestUpdateAreRefusedClearly: a
// secondary whose announced limits cannot carry the primary's largest
// update (a write is captured in updates of up to 4 MiB) would refuse
// record sets for ever; the primary refuses the link instead, with both
// numbers, in its status.
func TestSecondaryLimitsTooSmallForTheLargestUpdateAreRefusedClearly(t *testing.T) {
	t.Parallel()
	const volSize = 1 << 20
	cfg := newOpsConfig(t, volSize, 64<<20, time.Minute)
	s := &opsSession{t: t, cfg: cfg, net: newMemNet()}
	s.startSecondaryWith(site.SecondaryOptions{Limits: recordset.Limits{MaxPayload: 1 << 20}})
	s.startPrimary()
	t.Cleanup(func() {
		// Nothing can be shipped: the primary stops without draining.
		s.primRun()
		<-s.primErr
		s.stopSecondary()
	})
	var last string
	waitFor(t, 30*time.Second, "status to say the secondary's limits are too small, with both numbers", func() bool {
		last = s.prim.Status().LastError
		return strings.Contains(last, "1048576") && strings.Contains(last, "4194304")
	})
	t.Logf("last_error: %s", last)
	if st := s.sec.Replica().Stats(); st.JournaledGroup != 0 {
		t.Errorf("the secondary journaled %d groups from a primary whose updates it cannot take", st.JournaledGroup)
	}
}

// waitStateOr waits at most d for vol to reach want and returns the pair as
// it is then, so that the caller can say what went wrong.
func (s *opsSession) waitStateOr(vol string, want pair.State, d time.Duration) pair.Pair {
	deadline := time.Now().Add(d)
	for {
		p := s.pairs()[vol]
		if p.State == want || time.Now().After(deadline) {
			return p
		}
		time.Sleep(10 * time.Millisecond)
	}
}
