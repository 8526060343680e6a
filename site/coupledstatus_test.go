package site

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"duplex/control"
)

// nsOf reads a time of status.
func nsOf(s string) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	return t.UnixNano(), err
}

// The primary of a coupled member whose secondary holds writes journaled
// past the master time reports two times: the consistency time, what its
// secondary recovers to (recover leaves it at the master time it applied
// through; no later), and the journaled time, through which the secondary
// journaled and acknowledged every write, applied once the group's master
// time reaches it. It reported the journaled time as the consistency time,
// past anything a recover of that secondary leaves.
func TestHeldMembersPrimaryReportsTheConsistentAndTheJournaledTime(t *testing.T) {
	cfg := linkConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := holdPastTheMasterTime(t, cfg, quiet)
	journaled := h.prim.Mover().Stats().Acked.Time
	st := h.prim.Status()
	consistent, err := nsOf(st.ConsistencyTime)
	if err != nil {
		t.Fatalf("consistency_time %q: %v", st.ConsistencyTime, err)
	}
	if consistent > h.other {
		t.Errorf("consistency_time %s, past the master time %s the secondary applied through and recovers to",
			st.ConsistencyTime, control.FormatTime(h.other))
	}
	if got, err := nsOf(st.JournaledTime); err != nil || got < journaled {
		t.Errorf("journaled_time %q (%v), want the time acknowledged, %s or later", st.JournaledTime, err, control.FormatTime(journaled))
	}
	for _, v := range st.Volumes {
		if c, err := nsOf(v.ConsistencyTime); v.ConsistencyTime != "" && (err != nil || c > h.other) {
			t.Errorf("volume %s: consistency_time %s, past the master time %s", v.Name, v.ConsistencyTime, control.FormatTime(h.other))
		}
	}
}
