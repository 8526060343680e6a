package site

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// TestSecondaryStatusIsOneSnapshot: the secondary's status reads the group
// and its time, then each volume's time, separately, so a group applied in
// between is reported as "vol3 consistent as of T2 (group G1)": the time of
// one group under the number of the one before, later than the session's
// consistency time in the same answer, and not the time recover gives for
// that group. Every duplex volume is at the applied group: its time is the
// session's.
func TestSecondaryStatusIsOneSnapshot(t *testing.T) {
	cfg := linkConfig(t)
	x := runSites(t, cfg, cfg)
	s, p := x.s, x.p
	waitFor(t, 30*time.Second, "the pairs to be duplex", func() bool {
		for _, v := range s.Status().Volumes {
			if v.State != "duplex" || v.ConsistencyTime == "" {
				return false
			}
		}
		return true
	})
	stop := writeRoundAndRound(t, p, "vol1", "vol3")
	defer stop()
	time.Sleep(time.Second) // past the first copies' ends
	torn := 0
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && torn == 0 {
		st := s.Status()
		for _, v := range st.Volumes {
			if v.State == "duplex" && v.ConsistencyTime != st.ConsistencyTime {
				torn++
				t.Errorf("group %d at %s, but %s is %q (consistency_time %s)", *st.Group, st.ConsistencyTime, v.Name, v.Consistency, v.ConsistencyTime)
			}
		}
	}
	stop()
}

// TestPrimaryStatusVolumeTimesAreTheSessions: at the primary, a duplex
// volume's consistency_time is the pair manager's copy of an earlier
// acknowledgement (max(Consistent, acked) as the pairs last took it), the
// session's the mover's latest: the same answer says the secondary recovers
// to T2 and that vol1 there is consistent as of T1 < T2, although the
// secondary's copy of vol1 holds the writes between (so it is not vol1 as of
// T1). With no resync holding the secondary, every duplex volume is at the
// session's time.
func TestPrimaryStatusVolumeTimesAreTheSessions(t *testing.T) {
	cfg := linkConfig(t)
	p := runSites(t, cfg, cfg).p
	waitFor(t, 30*time.Second, "the pairs to be duplex", func() bool {
		for _, v := range p.Status().Volumes {
			if v.State != "duplex" || v.ConsistencyTime == "" {
				return false
			}
		}
		return true
	})
	stop := writeRoundAndRound(t, p, "vol1")
	defer stop()
	time.Sleep(time.Second)
	bad := 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && bad == 0; time.Sleep(10 * time.Millisecond) {
		st := p.Status()
		for _, v := range st.Volumes {
			if v.State == "duplex" && v.ConsistencyTime != st.ConsistencyTime {
				bad++
				t.Errorf("the secondary recovers to %s, but %s is consistent as of %s", st.ConsistencyTime, v.Name, v.ConsistencyTime)
			}
		}
	}
	stop()
}

// writeRoundAndRound has p write the first 64 blocks of each of vols, one
// after another, round and round until stop, which waits for the last.
func writeRoundAndRound(t *testing.T, p *Primary, vols ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := bytes.Repeat([]byte{1}, 4096)
		for i := 0; ctx.Err() == nil; i++ {
			for _, v := range vols {
				if err := p.Write(ctx, v, b, int64(i%64)*4096); err != nil && ctx.Err() == nil {
					t.Errorf("write %s: %v", v, err)
					return
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
