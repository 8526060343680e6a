package consistency

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"duplex/recordset"
)

const session = "sess"

// w is a one-byte write to volume vol stamped ts.
func w(vol string, ts int64) recordset.Update {
	return recordset.Update{Volume: vol, Kind: recordset.KindWrite, Offset: uint64(ts % 1000), Length: 1, Timestamp: ts, Seq: uint64(ts), Data: []byte{byte(ts)}}
}

// set builds a record set of subsystem ss whose updates are stamped ts.
func set(ss string, seq uint64, horizon int64, ts ...int64) *recordset.RecordSet {
	rs := &recordset.RecordSet{Session: session, Subsystem: ss, Seq: seq, Group: seq, Horizon: horizon}
	for _, t := range ts {
		rs.Updates = append(rs.Updates, w("vol-"+ss, t))
	}
	return rs
}

func mustAdd(t *testing.T, f *Former, rs *recordset.RecordSet, want Outcome) {
	t.Helper()
	got, err := f.Add(rs)
	if err != nil {
		t.Fatalf("Add(%s/%d): %v", rs.Subsystem, rs.Seq, err)
	}
	if got != want {
		t.Fatalf("Add(%s/%d) = %v, want %v", rs.Subsystem, rs.Seq, got, want)
	}
}

// formAll forms groups until the time stops advancing.
func formAll(f *Former) []*Group {
	var gs []*Group
	for {
		g, ok := f.Form()
		if !ok {
			return gs
		}
		gs = append(gs, g)
	}
}

func stamps(us []recordset.Update) []int64 {
	out := []int64{}
	for _, u := range us {
		out = append(out, u.Timestamp)
	}
	return out
}

func allStamps(gs []*Group) []int64 {
	out := []int64{}
	for _, g := range gs {
		out = append(out, stamps(g.Updates)...)
	}
	return out
}

func TestFormOneSubsystem(t *testing.T) {
	f := New(session, []string{"a"}, Start{})
	if _, ok := f.Form(); ok {
		t.Fatal("Form before anything arrived returned a group")
	}
	mustAdd(t, f, set("a", 1, 30, 10, 20, 30), Accepted)
	g, ok := f.Form()
	if !ok {
		t.Fatal("no group")
	}
	if got, want := stamps(g.Updates), []int64{10, 20, 30}; !slices.Equal(got, want) {
		t.Fatalf("updates %v, want %v", got, want)
	}
	if g.Time != 30 || f.Time() != 30 {
		t.Fatalf("group time %d, Former time %d; want 30", g.Time, f.Time())
	}
	if got := g.Through["a"]; got != 1 {
		t.Fatalf("Through[a] = %d, want 1", got)
	}
	if _, ok := f.Form(); ok {
		t.Fatal("second Form without new horizon returned a group")
	}
}

func TestDuplicatesDiscarded(t *testing.T) {
	f := New(session, []string{"a"}, Start{})
	mustAdd(t, f, set("a", 1, 15, 10), Accepted)
	mustAdd(t, f, set("a", 1, 15, 10), Duplicate)
	mustAdd(t, f, set("a", 2, 25, 20), Accepted)
	mustAdd(t, f, set("a", 1, 15, 10), Duplicate)
	mustAdd(t, f, set("a", 2, 25, 20), Duplicate)
	gs := formAll(f)
	if got, want := allStamps(gs), []int64{10, 20}; !slices.Equal(got, want) {
		t.Fatalf("updates %v, want %v: a duplicate got in", got, want)
	}
	// Duplicates of sets already in a group change nothing either.
	mustAdd(t, f, set("a", 2, 25, 20), Duplicate)
	mustAdd(t, f, set("a", 3, 35, 30), Accepted)
	if got, want := allStamps(formAll(f)), []int64{30}; !slices.Equal(got, want) {
		t.Fatalf("updates %v, want %v", got, want)
	}
}

func TestEarlyHeldUntilGapFills(t *testing.T) {
	f := New(session, []string{"a"}, Start{})
	mustAdd(t, f, set("a", 1, 15, 10), Accepted)
	mustAdd(t, f, set("a", 3, 35, 30), Early)
	mustAdd(t, f, set("a", 4, 45, 40), Early)
	mustAdd(t, f, set("a", 4, 45, 40), Duplicate) // already held
	if got, want := f.Ahead(), map[string]uint64{"a": 4}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Ahead = %v, want %v", got, want)
	}
	if got := f.Received()["a"]; got != 1 {
		t.Fatalf("Received[a] = %d, want 1", got)
	}
	gs := formAll(f)
	if got, want := allStamps(gs), []int64{10}; !slices.Equal(got, want) {
		t.Fatalf("updates %v, want %v: something beyond the gap was formed", got, want)
	}
	if f.Time() != 15 {
		t.Fatalf("time %d, want 15: the horizon of a set beyond the gap counted", f.Time())
	}
	mustAdd(t, f, set("a", 2, 25, 20), Accepted)
	if got := f.Received()["a"]; got != 4 {
		t.Fatalf("Received[a] = %d after the gap filled, want 4", got)
	}
	if got := f.Ahead(); len(got) != 0 {
		t.Fatalf("Ahead = %v after the gap filled, want none", got)
	}
	gs = formAll(f)
	if got, want := allStamps(gs), []int64{20, 30, 40}; !slices.Equal(got, want) {
		t.Fatalf("updates %v, want %v", got, want)
	}
	if f.Time() != 45 || f.Through()["a"] != 4 {
		t.Fatalf("time %d through %d, want 45 and 4", f.Time(), f.Through()["a"])
	}
}

// Whatever order the record sets arrive in, with duplicates, the updates come
// out once each, in timestamp order, and no group ever holds an update
// beyond a set that has not arrived.
func TestRandomArrivalOrder(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 1))
		subs := []string{"a", "b", "c"}
		var all []*recordset.RecordSet
		var want []int64
		ts := int64(0)
		next := map[string]uint64{}
		for range 60 {
			ss := subs[rng.IntN(len(subs))]
			next[ss]++
			var stampsOf []int64
			for range rng.IntN(4) {
				ts += 1 + rng.Int64N(5)
				stampsOf = append(stampsOf, ts)
				want = append(want, ts)
			}
			ts++
			all = append(all, set(ss, next[ss], ts, stampsOf...))
		}
		// Close every subsystem with an empty set past everything.
		ts++
		for _, ss := range subs {
			next[ss]++
			all = append(all, set(ss, next[ss], ts))
		}
		deliveries := append(slices.Clone(all), all[:20]...) // some twice
		rng.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })

		f := New(session, subs, Start{})
		var got []int64
		arrived := map[string]map[uint64]bool{}
		for _, rs := range deliveries {
			if _, err := f.Add(rs); err != nil {
				t.Fatal(err)
			}
			if arrived[rs.Subsystem] == nil {
				arrived[rs.Subsystem] = map[uint64]bool{}
			}
			arrived[rs.Subsystem][rs.Seq] = true
			for _, g := range formAll(f) {
				// Every update in the group is at or before the first set of
				// its subsystem that has not arrived.
				for _, u := range g.Updates {
					if u.Timestamp > g.Time {
						t.Fatalf("seed %d: update %d in group of time %d", seed, u.Timestamp, g.Time)
					}
				}
				for _, ss := range subs {
					seq := uint64(1)
					for arrived[ss][seq] {
						seq++
					}
					if seq > next[ss] {
						continue // all of ss arrived
					}
					// seq is the first missing set of ss: it may hold updates
					// just after the previous set's horizon, so the time must
					// not pass that horizon.
					prev := int64(0)
					if seq > 1 {
						prev = horizonOf(all, ss, seq-1)
					}
					if g.Time > prev {
						t.Fatalf("seed %d: time %d passed subsystem %s's horizon %d with set %d missing", seed, g.Time, ss, prev, seq)
					}
				}
				got = append(got, stamps(g.Updates)...)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("seed %d: formed %v\nwant %v", seed, got, want)
		}
		for _, ss := range subs {
			if got := f.Through()[ss]; got != next[ss] {
				t.Fatalf("seed %d: Through[%s] = %d, want %d", seed, ss, got, next[ss])
			}
		}
	}
}

func horizonOf(all []*recordset.RecordSet, ss string, seq uint64) int64 {
	for _, rs := range all {
		if rs.Subsystem == ss && rs.Seq == seq {
			return rs.Horizon
		}
	}
	panic("no such set")
}

func TestConsistencyTimeIsMinimumHorizon(t *testing.T) {
	f := New(session, []string{"a", "b", "c"}, Start{})
	mustAdd(t, f, set("a", 1, 100, 10, 90), Accepted)
	mustAdd(t, f, set("b", 1, 50, 20), Accepted)
	if _, ok := f.Form(); ok {
		t.Fatal("group formed while c has not reported")
	}
	mustAdd(t, f, set("c", 1, 70, 30, 60), Accepted)
	g, ok := f.Form()
	if !ok {
		t.Fatal("no group")
	}
	if g.Time != 50 {
		t.Fatalf("consistency time %d, want min(100, 50, 70) = 50", g.Time)
	}
	if got, want := stamps(g.Updates), []int64{10, 20, 30}; !slices.Equal(got, want) {
		t.Fatalf("updates %v, want %v", got, want)
	}
	if name, h := f.Laggard(); name != "b" || h != 50 {
		t.Fatalf("Laggard = %s, %d; want b, 50", name, h)
	}
	mustAdd(t, f, set("b", 2, 200), Accepted)
	g, ok = f.Form()
	if !ok || g.Time != 70 {
		t.Fatalf("second group: %v, time %v; want time 70", ok, g)
	}
	if got, want := stamps(g.Updates), []int64{60}; !slices.Equal(got, want) {
		t.Fatalf("updates %v, want %v", got, want)
	}
}

func TestSilentSubsystemHoldsTimeBack(t *testing.T) {
	f := New(session, []string{"a", "quiet", "z"}, Start{})
	for i := range uint64(20) {
		mustAdd(t, f, set("a", i+1, int64(i+1)*100, int64(i)*100+50), Accepted)
		mustAdd(t, f, set("z", i+1, int64(i+1)*100), Accepted)
		if g, ok := f.Form(); ok {
			t.Fatalf("group at time %d formed without subsystem quiet", g.Time)
		}
	}
	if name, h := f.Laggard(); name != "quiet" || h != 0 {
		t.Fatalf("Laggard = %s, %d; want quiet, 0", name, h)
	}
	if f.Time() != 0 {
		t.Fatalf("time %d, want 0", f.Time())
	}
	mustAdd(t, f, set("quiet", 1, 5000), Accepted)
	gs := formAll(f)
	if len(gs) != 1 || len(gs[0].Updates) != 20 || gs[0].Time != 2000 {
		t.Fatalf("after quiet reported: %d groups, want one of 20 updates at time 2000", len(gs))
	}
	if name, h := f.Laggard(); h != 2000 || (name != "a" && name != "z") {
		t.Fatalf("Laggard = %s, %d; want a or z at 2000", name, h)
	}
}

// An idle subsystem sends empty record sets whose horizon advances; it must
// not stall the others.
func TestIdleSubsystemDoesNotStall(t *testing.T) {
	f := New(session, []string{"busy", "idle"}, Start{})
	var got []int64
	for i := range int64(10) {
		seq := uint64(i + 1)
		mustAdd(t, f, set("busy", seq, (i+1)*100, i*100+10, i*100+20), Accepted)
		mustAdd(t, f, set("idle", seq, (i+1)*100), Accepted)
		g, ok := f.Form()
		if !ok {
			t.Fatalf("interval %d: no group while the idle subsystem reported horizon %d", i, (i+1)*100)
		}
		if g.Time != (i+1)*100 {
			t.Fatalf("interval %d: time %d, want %d", i, g.Time, (i+1)*100)
		}
		if g.Through["idle"] != seq || g.Through["busy"] != seq {
			t.Fatalf("interval %d: Through %v, want %d for both", i, g.Through, seq)
		}
		got = append(got, stamps(g.Updates)...)
	}
	if len(got) != 20 {
		t.Fatalf("%d updates formed, want 20", len(got))
	}
}

func TestUpdatesOrderedAcrossSubsystems(t *testing.T) {
	f := New(session, []string{"a", "b", "c"}, Start{})
	mustAdd(t, f, set("a", 1, 100, 1, 4, 7, 50), Accepted)
	mustAdd(t, f, set("b", 1, 100, 2, 5, 8, 9, 10), Accepted)
	mustAdd(t, f, set("c", 1, 100, 3, 6, 99), Accepted)
	g, ok := f.Form()
	if !ok {
		t.Fatal("no group")
	}
	if got, want := stamps(g.Updates), []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 50, 99}; !slices.Equal(got, want) {
		t.Fatalf("updates %v, want %v", got, want)
	}
	// Each update kept its volume and data.
	for _, u := range g.Updates {
		if u.Data[0] != byte(u.Timestamp) {
			t.Fatalf("update %d carries data %d", u.Timestamp, u.Data[0])
		}
	}
}

func TestThroughAdvancesOnlyWithWholeRecordSets(t *testing.T) {
	f := New(session, []string{"a", "b"}, Start{})
	mustAdd(t, f, set("a", 1, 40, 10, 30), Accepted)
	mustAdd(t, f, set("a", 2, 60), Accepted) // empty, after set 1
	mustAdd(t, f, set("b", 1, 20), Accepted)
	g, ok := f.Form()
	if !ok || g.Time != 20 {
		t.Fatalf("group: %v; want time 20", g)
	}
	if got, want := stamps(g.Updates), []int64{10}; !slices.Equal(got, want) {
		t.Fatalf("updates %v, want %v", got, want)
	}
	// Set a/1 is only half in the group; the empty a/2 after it is not yet
	// either, since Through is a prefix.
	if got := g.Through["a"]; got != 0 {
		t.Fatalf("Through[a] = %d with update 30 of set 1 still pending, want 0", got)
	}
	if got := g.Through["b"]; got != 1 {
		t.Fatalf("Through[b] = %d, want 1", got)
	}
	mustAdd(t, f, set("a", 3, 80, 70), Accepted)
	mustAdd(t, f, set("b", 2, 35), Accepted)
	g, _ = f.Form()
	// Update 30 is formed, so a/1 is whole, and so is the empty a/2; a/3 is not.
	if got := g.Through["a"]; got != 2 {
		t.Fatalf("Through[a] = %d after update 30 was formed, want 2", got)
	}
	mustAdd(t, f, set("b", 3, 65), Accepted)
	g, _ = f.Form()
	if got := g.Through["a"]; got != 2 {
		t.Fatalf("Through[a] = %d with update 70 of a/3 pending, want 2", got)
	}
	mustAdd(t, f, set("b", 4, 100), Accepted)
	g, _ = f.Form()
	if got := g.Through["a"]; got != 3 {
		t.Fatalf("Through[a] = %d, want 3", got)
	}
	if !reflect.DeepEqual(g.Through, f.Through()) {
		t.Fatalf("group Through %v differs from Former Through %v", g.Through, f.Through())
	}
}

// Through must never claim a record set whose updates are not all in formed
// groups: a restarted secondary resumes from it, and the primary releases
// its sidefile up to it.
func TestThroughNeverAheadOfFormedUpdates(t *testing.T) {
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 2))
		subs := []string{"a", "b"}
		f := New(session, subs, Start{})
		formed := map[int64]bool{}
		sets := map[string][]*recordset.RecordSet{}
		ts := int64(0)
		for range 200 {
			ss := subs[rng.IntN(2)]
			var st []int64
			for range rng.IntN(3) {
				ts++
				st = append(st, ts)
			}
			ts++
			rs := set(ss, uint64(len(sets[ss])+1), ts, st...)
			sets[ss] = append(sets[ss], rs)
			mustAdd(t, f, rs, Accepted)
			for _, g := range formAll(f) {
				for _, u := range g.Updates {
					formed[u.Timestamp] = true
				}
				for _, name := range subs {
					for _, rs := range sets[name][:g.Through[name]] {
						for _, u := range rs.Updates {
							if !formed[u.Timestamp] {
								t.Fatalf("seed %d: Through[%s] = %d but update %d of set %d is not formed", seed, name, g.Through[name], u.Timestamp, rs.Seq)
							}
						}
					}
				}
			}
		}
	}
}

func TestRestartSkipsUpdatesAtOrBeforeStart(t *testing.T) {
	// Before the crash: group through time 25 journaled, with a/1 wholly in
	// it and a/2 partly (its update 20), b/1 wholly.
	start := Start{Time: 25, Through: map[string]uint64{"a": 1, "b": 1}, Resent: true}
	f := New(session, []string{"a", "b"}, start)
	if f.Time() != 25 {
		t.Fatalf("Time = %d, want the start time 25", f.Time())
	}
	if got, want := f.Received(), map[string]uint64{"a": 1, "b": 1}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Received = %v, want %v", got, want)
	}
	// The primary resends from Through+1 (and possibly older ones again).
	mustAdd(t, f, set("a", 1, 15, 10), Duplicate)
	mustAdd(t, f, set("a", 2, 40, 20, 25, 30), Accepted)
	mustAdd(t, f, set("b", 2, 50, 35), Accepted)
	g, ok := f.Form()
	if !ok {
		t.Fatal("no group")
	}
	if got, want := stamps(g.Updates), []int64{30, 35}; !slices.Equal(got, want) {
		t.Fatalf("updates %v, want %v: updates at or before the start time 25 were formed again", got, want)
	}
	if g.Through["a"] != 2 || g.Through["b"] != 2 {
		t.Fatalf("Through %v, want a:2 b:2", g.Through)
	}
}

// The same primary process may resend a partly journaled record set
// re-formed into several smaller ones: each of them up to the first that
// carries an update after the start time repeats journaled updates, which
// are skipped, and every update after the start time is formed once.
// Past that record set an update at or before the start time is no
// repeat and is refused.
func TestRestartSkipsUpdatesRepeatedInReformedRecordSets(t *testing.T) {
	start := Start{Time: 25, Through: map[string]uint64{"a": 1, "b": 1}, Resent: true}
	f := New(session, []string{"a", "b"}, start)
	// a/2 was partly journaled (through 25) and comes again in three parts;
	// one waits behind a gap.
	mustAdd(t, f, set("a", 3, 24, 22, 24), Early)
	mustAdd(t, f, set("a", 2, 21, 20, 21), Accepted)
	mustAdd(t, f, set("a", 4, 40, 25, 30), Accepted)
	mustAdd(t, f, set("b", 2, 50, 35), Accepted)
	g, ok := f.Form()
	if !ok {
		t.Fatal("no group")
	}
	if got, want := stamps(g.Updates), []int64{30, 35}; !slices.Equal(got, want) {
		t.Fatalf("updates %v, want %v: journaled updates formed again, or new ones lost", got, want)
	}
	if g.Through["a"] != 4 || g.Through["b"] != 2 {
		t.Fatalf("Through %v, want a:4 b:2", g.Through)
	}
	if _, err := f.Add(set("a", 5, 60, 23, 45)); !errors.Is(err, ErrStale) {
		t.Fatalf("Add of an update stamped 23 after a record set with one stamped 30: %v; want ErrStale", err)
	}

	// A horizon after the start time closes the window as well.
	f = New(session, []string{"a", "b"}, start)
	mustAdd(t, f, set("a", 2, 30, 20), Accepted)
	if _, err := f.Add(set("a", 3, 40, 24, 35)); !errors.Is(err, ErrStale) {
		t.Fatalf("Add of an update stamped 24 after a horizon of 30: %v; want ErrStale", err)
	}
}

// From another primary process than the one whose record sets were
// journaled, an update stamped at or before the start time is no repeat: its
// clock is behind. It is refused, not dropped; nothing of the record set is
// taken.
func TestStaleStampRefusedFromAnotherPrimary(t *testing.T) {
	f := New(session, []string{"a", "b"}, Start{Time: 25, Through: map[string]uint64{"a": 1, "b": 1}})
	out, err := f.Add(set("a", 2, 40, 20, 30))
	if !errors.Is(err, ErrStale) {
		t.Fatalf("Add of an update stamped 20 after a start at 25: %v, %v; want ErrStale", out, err)
	}
	if got := f.Received()["a"]; got != 1 {
		t.Fatalf("Received a = %d after the refusal, want 1: nothing of it is taken", got)
	}
	// Also later, beyond the first record set, and for one that waited
	// behind a gap.
	mustAdd(t, f, set("a", 3, 60, 50), Early)
	mustAdd(t, f, set("a", 2, 45, 30), Accepted)
	mustAdd(t, f, set("b", 2, 70, 55), Accepted)
	if _, ok := f.Form(); !ok {
		t.Fatal("no group")
	}
	if _, err := f.Add(set("b", 3, 80, 60)); !errors.Is(err, ErrStale) {
		t.Fatalf("Add of an update stamped 60 after a group through 60: %v; want ErrStale", err)
	}
}

// A subsystem not in the start position starts from scratch.
func TestRestartWithNewSubsystem(t *testing.T) {
	f := New(session, []string{"a", "new"}, Start{Time: 25, Through: map[string]uint64{"a": 3}})
	mustAdd(t, f, set("new", 1, 30, 26), Accepted)
	mustAdd(t, f, set("a", 4, 30, 27), Accepted)
	g, ok := f.Form()
	if !ok || !slices.Equal(stamps(g.Updates), []int64{26, 27}) {
		t.Fatalf("group %v", g)
	}
}

func TestForeignRejected(t *testing.T) {
	f := New(session, []string{"a"}, Start{})
	other := set("a", 1, 10, 5)
	other.Session = "other"
	if _, err := f.Add(other); !errors.Is(err, ErrForeign) {
		t.Fatalf("record set of another session: %v, want ErrForeign", err)
	}
	if _, err := f.Add(set("b", 1, 10, 5)); !errors.Is(err, ErrForeign) {
		t.Fatalf("record set of an unknown subsystem: %v, want ErrForeign", err)
	}
	// Neither changed anything.
	if got := f.Received()["a"]; got != 0 {
		t.Fatalf("Received[a] = %d, want 0", got)
	}
	if _, ok := f.Through()["b"]; ok {
		t.Fatal("unknown subsystem b appears in Through")
	}
	mustAdd(t, f, set("a", 1, 10, 7), Accepted)
	g, _ := f.Form()
	if got, want := stamps(g.Updates), []int64{7}; !slices.Equal(got, want) {
		t.Fatalf("updates %v, want %v", got, want)
	}
}

func TestMaxEarly(t *testing.T) {
	f := New(session, []string{"a"}, Start{})
	for seq := uint64(2); seq < 2+MaxEarly; seq++ {
		mustAdd(t, f, set("a", seq, int64(seq)*10, int64(seq)*10-5), Early)
	}
	mustAdd(t, f, set("a", 2+MaxEarly, (2+MaxEarly)*10), Dropped)
	if got := f.Ahead()["a"]; got != 1+MaxEarly {
		t.Fatalf("Ahead[a] = %d, want %d", got, 1+MaxEarly)
	}
	mustAdd(t, f, set("a", 1, 10, 5), Accepted)
	if got := f.Received()["a"]; got != 1+MaxEarly {
		t.Fatalf("Received[a] = %d, want %d", got, 1+MaxEarly)
	}
	// The dropped one is simply accepted when it comes again.
	mustAdd(t, f, set("a", 2+MaxEarly, (2+MaxEarly)*10), Accepted)
	gs := formAll(f)
	if got := len(allStamps(gs)); got != 1+MaxEarly {
		t.Fatalf("%d updates formed, want %d", got, 1+MaxEarly)
	}
}

func TestNoSubsystems(t *testing.T) {
	f := New(session, nil, Start{})
	if _, ok := f.Form(); ok {
		t.Fatal("Former without subsystems formed a group")
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{Accepted: "accepted", Duplicate: "duplicate", Early: "early", Dropped: "dropped"} {
		if got := o.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", o, got, want)
		}
	}
}

// Groups formed from record sets that a secondary accepts under its limits
// are journaled and, after a crash, decoded under the same limits. A group
// that merges several record sets (because one subsystem's horizon held the
// time back while another kept sending) must therefore still decode.
func TestFormedGroupDecodesUnderTheLimitsItsRecordSetsMet(t *testing.T) {
	lim := recordset.Limits{MaxPayload: 64 << 10, MaxRecords: 64}
	f := New(session, []string{"busy", "slow"}, Start{})
	ts := int64(0)
	for seq := uint64(1); seq <= 4; seq++ {
		rs := &recordset.RecordSet{Session: session, Subsystem: "busy", Seq: seq, Group: seq}
		for range 40 {
			ts++
			rs.Updates = append(rs.Updates, recordset.Update{Volume: "v", Kind: recordset.KindWrite, Offset: uint64(ts) * 1024, Length: 1024, Timestamp: ts, Data: make([]byte, 1024)})
		}
		rs.Horizon = ts
		b, err := recordset.Encode(nil, rs)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := recordset.Decode(b, lim)
		if err != nil {
			t.Fatalf("record set %d is not acceptable under the limits: %v", seq, err)
		}
		mustAdd(t, f, dec, Accepted)
	}
	mustAdd(t, f, set("slow", 1, ts), Accepted)
	g, ok := f.Form()
	if !ok {
		t.Fatal("no group")
	}
	g.Number = 1
	b, err := EncodeGroup(nil, session, g)
	if err != nil {
		t.Fatalf("EncodeGroup: %v", err)
	}
	// A group gathers record sets up to the slowest horizon, so it may exceed
	// what one record set may be: the secondary decodes journaled groups with
	// limits of their own (secondary.MaxGroupBytes), never the wire limits.
	if _, _, err := DecodeGroup(b, lim); err == nil {
		t.Logf("group fits the record-set limits")
	}
	groupLim := recordset.Limits{MaxHeader: 1 << 30, MaxPayload: 2 << 30, MaxRecords: 1 << 26}
	if _, _, err := DecodeGroup(b, groupLim); err != nil {
		t.Errorf("a group of %d updates (%d data bytes) does not decode under group limits: %v", len(g.Updates), groupBytes(g), err)
	}
}

func groupBytes(g *Group) int {
	n := 0
	for _, u := range g.Updates {
		n += len(u.Data)
	}
	return n
}

// Formed groups hand out their updates: later Adds and Forms must not change
// a group already returned.
func TestGroupNotAliasedByLaterWork(t *testing.T) {
	f := New(session, []string{"a"}, Start{})
	mustAdd(t, f, set("a", 1, 30, 10, 20, 30), Accepted)
	g, _ := f.Form()
	before := slices.Clone(g.Updates)
	through := maps.Clone(g.Through)
	for seq := uint64(2); seq < 50; seq++ {
		mustAdd(t, f, set("a", seq, int64(seq)*100, int64(seq)*100-2, int64(seq)*100-1), Accepted)
		formAll(f)
	}
	if !reflect.DeepEqual(g.Updates, before) || !reflect.DeepEqual(g.Through, through) {
		t.Fatalf("group changed after later work:\n got %v %v\nwant %v %v", stamps(g.Updates), g.Through, stamps(before), through)
	}
}

func ExampleFormer() {
	f := New("s", []string{"a", "b"}, Start{})
	f.Add(&recordset.RecordSet{Session: "s", Subsystem: "a", Seq: 1, Horizon: 30, Updates: []recordset.Update{
		{Volume: "v", Kind: recordset.KindZeroes, Length: 1, Timestamp: 10},
		{Volume: "v", Kind: recordset.KindZeroes, Length: 1, Timestamp: 25},
	}})
	f.Add(&recordset.RecordSet{Session: "s", Subsystem: "b", Seq: 1, Horizon: 20})
	g, _ := f.Form()
	fmt.Println(g.Time, len(g.Updates), g.Through["a"], g.Through["b"])
	// Output: 20 1 0 1
}

// Formed says a record set's data is read by the Former no more only once
// every update of it is in a formed group: not while it is held early, nor
// while an update of it waits for another subsystem's horizon.
func TestFormedOnceEveryUpdateIsInAGroup(t *testing.T) {
	f := New("s", []string{"a", "b"}, Start{})
	set := func(sub string, seq uint64, horizon int64, stamps ...int64) *recordset.RecordSet {
		rs := &recordset.RecordSet{Session: "s", Subsystem: sub, Seq: seq, Horizon: horizon}
		for _, ts := range stamps {
			rs.Updates = append(rs.Updates, recordset.Update{Volume: "v", Kind: recordset.KindWrite, Length: 1, Timestamp: ts, Data: []byte{1}})
		}
		return rs
	}
	mustAdd := func(rs *recordset.RecordSet, want Outcome) {
		t.Helper()
		if out, err := f.Add(rs); err != nil || out != want {
			t.Fatalf("Add(%s/%d) = %v, %v; want %v", rs.Subsystem, rs.Seq, out, err, want)
		}
	}
	mustAdd(set("a", 2, 30, 25), Early)
	if f.Formed("a", 2) {
		t.Fatal("a/2 held early is formed")
	}
	mustAdd(set("a", 1, 20, 10, 15), Accepted) // a/2 follows
	mustAdd(set("b", 1, 12, 11), Accepted)
	if _, ok := f.Form(); !ok { // through 12: a/1's update at 15 waits
		t.Fatal("no group through 12")
	}
	if f.Formed("a", 1) || !f.Formed("b", 1) {
		t.Fatalf("through 12: a/1 formed %v (its update at 15 waits), b/1 formed %v", f.Formed("a", 1), f.Formed("b", 1))
	}
	mustAdd(set("b", 2, 40), Accepted)
	if _, ok := f.Form(); !ok { // through 30
		t.Fatal("no group through 30")
	}
	if !f.Formed("a", 1) || !f.Formed("a", 2) {
		t.Fatalf("through 30: a/1 formed %v, a/2 formed %v", f.Formed("a", 1), f.Formed("a", 2))
	}
	if f.Formed("a", 3) || f.Formed("c", 1) {
		t.Fatal("a set not taken, or of an unknown subsystem, is formed")
	}
}
