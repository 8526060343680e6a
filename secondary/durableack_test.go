package secondary

import (
	"testing"
	"time"

	"duplex/transport"
)

// TestReceiptsAckOnlyWhatIsDurable: an idle primary sends record sets
// without updates; the secondary forms empty groups from them but journals
// one only once a Checkpoint. Every acknowledgement must pair the group it
// names with that group's own time, the time recover (or a restart) would
// print for it: a receipt paired the last journaled group with the last
// formed group's time, so the primary claimed, and its status showed, a
// consistency time up to a Checkpoint later than anything durable at the
// secondary, which recover then could not confirm.
func TestReceiptsAckOnlyWhatIsDurable(t *testing.T) {
	acks := make(chan transport.Position, 64)
	r := newLagRigAcks(t, Config{Checkpoint: time.Hour}, nil, acks)
	r.send(t, 1, false)
	for seq := uint64(2); seq <= 5; seq++ {
		r.send(t, seq, true)
	}
	// Group 1 (1 ms) is the only one journaled; the empty groups up to 5 ms
	// are formed, not journaled.
	want := int64(1 * time.Millisecond)
	deadline := time.After(30 * time.Second)
	var last transport.Position
	// Received says the empty groups up to 5 ms were formed: status no
	// longer shows their time, which is not durable.
	for last.Group < 1 || last.Received["ss1"] < 5 {
		select {
		case p, ok := <-acks:
			if !ok {
				t.Fatal("the link closed")
			}
			last = p
			if p.Group == 1 && p.Time != want {
				t.Fatalf("acknowledged group %d as of %d, but group 1 is journaled as of %d (the empty groups after it are not): "+
					"recover would print %d", p.Group, p.Time, want, want)
			}
		case <-deadline:
			t.Fatalf("no acknowledgement of group 1 with the empty groups formed within 30s (last %+v)", last)
		case <-time.After(10 * time.Millisecond):
		}
	}
	// Drain what is already sent: a receipt of the empty groups comes last.
	for {
		select {
		case p, ok := <-acks:
			if !ok {
				return
			}
			if p.Group == 1 && p.Time != want {
				t.Fatalf("acknowledged group %d as of %d, but group 1 is journaled as of %d (the empty groups after it are not): "+
					"recover would print %d", p.Group, p.Time, want, want)
			}
		case <-time.After(500 * time.Millisecond):
			if st := r.sec.Stats(); st.JournaledGroup != 1 {
				t.Fatalf("journaled group %d, want 1: the empty groups were journaled", st.JournaledGroup)
			}
			return
		}
	}
}
