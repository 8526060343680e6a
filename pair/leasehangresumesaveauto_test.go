package pair

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/recordset"
)

// TestTheSessionsResumeWhileTheMarkersWaitForTheLeaseBesideASlowSaveIsPutOffThenMade:
// as in TestAResumeWhileTheMarkersWaitForTheLeaseIsRefusedBesideASlowSave,
// the markers announced again after the session's drop wait for a hung
// lease and the save after the suspension is held; the link comes back
// meanwhile. The session's own resume on the link's return is put off
// for the lease, said so in the log, a and b left suspended; once the
// disks answer it is made by itself, each pair's suspension announced
// again before its resync's marker.
func TestTheSessionsResumeWhileTheMarkersWaitForTheLeaseBesideASlowSaveIsPutOffThenMade(t *testing.T) {
	r := markersWaitBesideASlowSave(t)
	time.Sleep(50 * time.Millisecond)
	r.mv.ackAll(r.tm)
	r.mv.connected.Store(true)
	waitUntil(t, 10*time.Second, "the session's resume on the link's return to be put off for the lease", func() bool {
		return strings.Contains(r.logs.String(), "the session's resume on the link's return waits for the write of the timer's lease")
	})
	for _, vol := range []string{"a", "b"} {
		if p := r.pairOf(vol); p.State != Suspended || !p.Auto {
			t.Errorf("%s while the session's resume waits for the lease: %s (auto %v), want suspended by the session", vol, p.State, p.Auto)
		}
	}
	r.release()
	leaseWritten(t, r.tm, filepath.Join(r.dir, "lease"))
	for _, vol := range []string{"a", "b"} {
		r.waitPair(vol, "resumed by the session once the disks answered", func(p Pair) bool { return p.State != Suspended })
	}
	waitUntil(t, 10*time.Second, "the log to say the session's resume made", func() bool {
		return strings.Contains(r.logs.String(), "the session's resume on the link's return made")
	})
	ups, _, _ := r.ss.Drain()
	var seen []string
	for _, u := range ups {
		if u.Kind != recordset.KindMarker {
			continue
		}
		m, err := recordset.DecodeMarker(u)
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, u.Volume+" "+m.State.String())
	}
	t.Logf("markers captured since the drop: %v", seen)
	for _, vol := range []string{"a", "b"} {
		s, c := -1, -1
		for i, m := range seen {
			switch {
			case m == vol+" "+recordset.StateSuspended.String() && s < 0:
				s = i
			case strings.HasPrefix(m, vol+" ") && m != vol+" "+recordset.StateSuspended.String() && c < 0:
				c = i
			}
		}
		if s < 0 || c < 0 || c < s {
			t.Errorf("markers captured since the drop %v: want %s's suspension announced again before its resync's", seen, vol)
		}
	}
}
