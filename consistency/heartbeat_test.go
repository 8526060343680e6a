package consistency

import (
	"errors"
	"slices"
	"testing"
)

// A heartbeat counts as an empty record set after the ones it names would:
// it raises its subsystem's horizon only once every record set through its
// number is accepted in order, so the consistency time stays the minimum
// of horizons reported contiguously.
func TestHeartbeatCountsOnlyAfterTheRecordSetsItNames(t *testing.T) {
	f := New(session, []string{"a", "b"}, Start{})
	mustAdd(t, f, set("a", 1, 20, 10), Accepted)
	mustAdd(t, f, set("b", 1, 25), Accepted)
	if g, ok := f.Form(); !ok || g.Time != 20 {
		t.Fatalf("Form = %+v, %v; want a group through 20", g, ok)
	}

	// b's heartbeat through record set 2, which has not come: a's
	// horizon is not b's to raise, and b's own stays at 25.
	mustAdd(t, f, set("a", 2, 100, 50), Accepted)
	if err := f.Heartbeat("b", 2, 90); err != nil {
		t.Fatal(err)
	}
	g, ok := f.Form()
	if !ok || g.Time != 25 {
		t.Fatalf("with b's record set 2 missing, Form = %+v, %v; want a group through b's horizon 25", g, ok)
	}
	// Record set 2 of b holds an update at 60: the heartbeat that came
	// before it must not have let a group through 90 form without it.
	mustAdd(t, f, set("b", 2, 70, 60), Accepted)
	if err := f.Heartbeat("b", 2, 90); err != nil {
		t.Fatal(err)
	}
	gs := formAll(f)
	if len(gs) != 1 || gs[0].Time != 90 {
		t.Fatalf("groups %+v, want one through 90", gs)
	}
	if got, want := stamps(gs[0].Updates), []int64{50, 60}; !slices.Equal(got, want) {
		t.Fatalf("group holds %v, want %v", got, want)
	}
	// A stale heartbeat never lowers a horizon.
	if err := f.Heartbeat("b", 1, 30); err != nil {
		t.Fatal(err)
	}
	if _, h := f.Laggard(); h != 90 {
		t.Fatalf("laggard horizon %d after a stale heartbeat, want 90", h)
	}
	if err := f.Heartbeat("c", 1, 30); !errors.Is(err, ErrForeign) {
		t.Fatalf("heartbeat of an unknown subsystem: %v, want ErrForeign", err)
	}
}

// From the primary process whose record sets were journaled, a heartbeat
// past the journaled time ends the window in which a resent record set may
// repeat journaled updates, as a record set with that horizon does.
func TestHeartbeatEndsTheRepeatWindow(t *testing.T) {
	f := New(session, []string{"a"}, Start{Time: 100, Through: map[string]uint64{"a": 3}, Resent: true})
	if err := f.Heartbeat("a", 3, 150); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Add(set("a", 4, 200, 90)); !errors.Is(err, ErrStale) {
		t.Fatalf("an update stamped 90 after a heartbeat through 150: %v, want ErrStale", err)
	}
}
