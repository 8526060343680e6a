package secondary

import (
	"strings"
	"testing"

	"duplex/recordset"
	"duplex/transport"
)

// TestStampsOutOfOrderAreRefusedAndTheSecondaryServesOn: one primary
// process stamps every subsystem's writes from one timer, strictly
// increasing, so two updates of a session never share a stamp and a
// subsystem's stamps only rise; a primary that breaks this (two
// subsystems' updates stamped alike, or a subsystem's later record set
// stamped below its earlier one) has its record set refused, with a
// reason that names the stamp and the update it collides with, never
// journaled. The secondary stays up: the next link is welcomed, a
// primary stamping in order has its groups journaled and applied, and
// the refused sets, sent again, are refused again rather than stopping it.
func TestStampsOutOfOrderAreRefusedAndTheSecondaryServesOn(t *testing.T) {
	for _, tc := range []struct {
		name string
		sets func() []*recordset.RecordSet
		says []string
	}{
		{"two subsystems stamped alike", func() []*recordset.RecordSet {
			a := subsystemSet("ss1", 1, 1000, 2000, write("vol1", 0))
			b := subsystemSet("ss2", 1, 1000, 2000, write("vol1", 4096))
			return []*recordset.RecordSet{a, b}
		}, []string{"ss2/1", "1000", "ss1"}},
		{"a subsystem stamped back", func() []*recordset.RecordSet {
			a := subsystemSet("ss1", 1, 1500, 1500, write("vol1", 0))
			b := subsystemSet("ss1", 2, 1200, 1600, write("vol1", 4096))
			return []*recordset.RecordSet{a, b, subsystemSet("ss2", 1, 1100, 1600)}
		}, []string{"ss1/2", "1200", "1500"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, map[string]int64{"vol1": 1 << 20}, "ss1", "ss2")
			for round := range 2 {
				conn := linked(t, r)
				next := map[string]uint64{}
				sets := tc.sets()
				for _, rs := range sets {
					next[rs.Subsystem] = rs.Seq + 1
				}
				// Both report a horizon past every stamp, so that the
				// group holding them forms.
				sets = append(sets, subsystemSet("ss1", next["ss1"], 1800, 3000), subsystemSet("ss2", next["ss2"], 1900, 3000))
				for _, rs := range sets {
					f, err := recordset.Encode([]byte{transport.TypeRecordSet}, rs)
					if err != nil {
						t.Fatal(err)
					}
					// The refusal may close the link before the sets
					// after the refused one are sent.
					if conn.Send(transport.Seal(f)) != nil {
						break
					}
				}
				body := refusedOn(t, conn)
				ref, err := transport.DecodeRefuse(body)
				if err != nil {
					t.Fatal(err)
				}
				for _, w := range tc.says {
					if !strings.Contains(ref.Reason, w) {
						t.Errorf("round %d: refusal %q does not name %q", round, ref.Reason, w)
					}
				}
				if !ref.Passing || ref.Kind != transport.RefusalStale {
					t.Errorf("round %d: refusal passing %v kind %d, want a passing stale one (the primary suspends and stamps anew)", round, ref.Passing, ref.Kind)
				}
				conn.Close()
				if st := r.sec.Stats(); st.Stopped != "" || st.JournaledGroup != 0 {
					t.Fatalf("round %d: secondary stopped %q, journaled through group %d: want running, nothing journaled", round, st.Stopped, st.JournaledGroup)
				}
			}
			// A primary stamping in order is served.
			conn := linked(t, r)
			sendRecordSet(t, conn, subsystemSet("ss1", 1, 1000, 2000, write("vol1", 0)))
			sendRecordSet(t, conn, subsystemSet("ss2", 1, 1001, 2000, write("vol1", 4096)))
			if reason, acked := answers(t, conn, 0); acked < 1 {
				t.Fatalf("in-order sets not acknowledged (refusal %q)", reason)
			}
			conn.Close()
			if st := r.sec.Stats(); st.Stopped != "" {
				t.Fatalf("secondary stopped: %s", st.Stopped)
			}
		})
	}
}
