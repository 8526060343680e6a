package secondary

import (
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
)

// The empty groups formed since the last group with updates was applied
// are not journaled: a restart, and recover, know only the applied group's
// time. Linked, fenced or unlinked, status and each volume report that time
// for the group, as a restart does: the same group is never shown with two
// times, nor with a time a kill -9 would take back.
func TestAnIdleTimeIsReportedOnlyOnceJournaled(t *testing.T) {
	for _, how := range []string{"fenced", "disconnected"} {
		t.Run(how, func(t *testing.T) {
			r := newRig(t, map[string]int64{"vol1": 1 << 20})
			r.edit = func(c *Config) { c.Checkpoint = time.Hour }
			r.stop()
			r.open()
			conn, typ, _ := r.dial(r.hello())
			if typ != transport.TypeWelcome {
				t.Fatalf("frame type %d, want a welcome", typ)
			}
			sendAndWait(t, conn,
				writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), write("vol1", 0)),
				writeSet(2, 20_000, mark("vol1", recordset.StateCopyEnd), write("vol1", 4096)))
			waitFor := func(what string, ok func(Stats) bool) Stats {
				t.Helper()
				deadline := time.Now().Add(10 * time.Second)
				for {
					st := r.sec.Stats()
					if ok(st) {
						return st
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: applied group %d as of %d, journaled %d", what, st.Group, st.Time, st.JournaledGroup)
					}
					time.Sleep(time.Millisecond)
				}
			}
			applied := waitFor("group 2 applied", func(st Stats) bool { return st.Group == 2 }).Time
			for seq := uint64(3); seq <= 5; seq++ {
				sendRecordSet(t, conn, writeSet(seq, int64(seq)*10_000))
			}
			waitFor("the empty record sets received", func(st Stats) bool { return st.RecordSets >= 5 })
			check := func(when string) {
				t.Helper()
				if st := r.sec.Stats(); st.Group != 2 || st.Time != applied {
					t.Errorf("%s: status reports group %d as of %d, want group 2 as of %d, its time", when, st.Group, st.Time, applied)
				}
				if v := r.sec.Volume("vol1"); !v.Consistent || v.Time != applied {
					t.Errorf("%s: vol1 %+v, want consistent as of %d", when, v, applied)
				}
			}
			check("linked")
			switch how {
			case "fenced":
				pos, err := r.sec.Fence()
				if err != nil {
					t.Fatal(err)
				}
				if pos.Group != 2 || pos.Time != applied {
					t.Errorf("fenced at group %d as of %d, want group 2 as of %d", pos.Group, pos.Time, applied)
				}
			case "disconnected":
				conn.Close()
				waitFor("the primary unlinked", func(st Stats) bool { return !st.Connected })
			}
			check(how)
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			r.open()
			check("restarted")
		})
	}
}
