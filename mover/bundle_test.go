package mover

import (
	"fmt"
	"testing"

	"duplex/recordset"
	"duplex/transport"
)

// To a secondary that takes bundles, a cut travels as one frame: the record
// sets of the subsystems with updates, and a heartbeat for each idle one,
// which takes no sequence number. Idle, a cut costs one small frame,
// whatever the number of subsystems.
func TestCutTravelsAsOneBundleWithHeartbeats(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1", "ss2", "ss3"}})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Through: map[string]uint64{"ss2": 4}, Features: transport.FeatureBundles})
	waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })

	p.write(t, "ss1", []byte("data"), 0)
	p.mover.Cut()
	b := l.bundle()
	if len(b.Sets) != 1 || len(b.Beats) != 2 {
		t.Fatalf("bundle of %d record sets and %d heartbeats, want 1 and 2", len(b.Sets), len(b.Beats))
	}
	rs, err := recordset.Decode(b.Sets[0], recordset.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if rs.Subsystem != "ss1" || rs.Seq != 1 || len(rs.Updates) != 1 {
		t.Fatalf("record set %s/%d with %d updates, want ss1/1 with 1", rs.Subsystem, rs.Seq, len(rs.Updates))
	}
	want := map[uint16]uint64{1: 4, 2: 0} // ss2 through 4 (the secondary's), ss3 through none
	for _, beat := range b.Beats {
		if seq, ok := want[beat.Subsystem]; !ok || beat.Seq != seq || beat.Horizon < rs.Horizon-1e9 {
			t.Fatalf("heartbeat %+v, want subsystems and numbers %v", beat, want)
		}
		delete(want, beat.Subsystem)
	}

	// Idle: heartbeats only, ss1's through the record set just sent.
	p.mover.Cut()
	b = l.bundle()
	if len(b.Sets) != 0 || len(b.Beats) != 3 {
		t.Fatalf("idle bundle of %d record sets and %d heartbeats, want 0 and 3", len(b.Sets), len(b.Beats))
	}
	for _, beat := range b.Beats {
		if beat.Subsystem == 0 && beat.Seq != 1 {
			t.Fatalf("ss1's heartbeat %+v, want through record set 1", beat)
		}
		if beat.Horizon <= rs.Horizon {
			t.Fatalf("heartbeat %+v not after the last cut's horizon %d", beat, rs.Horizon)
		}
	}
	if got := p.mover.Stats().HeldSets; got != 1 {
		t.Fatalf("%d record sets held, want 1: heartbeats are not held", got)
	}
}

func (l *link) bundle() transport.Bundle {
	l.t.Helper()
	typ, body := l.next()
	if typ != transport.TypeBundle {
		l.t.Fatalf("frame of type %d, want a bundle", typ)
	}
	b, err := transport.DecodeBundle(body)
	if err != nil {
		l.t.Fatal(err)
	}
	return b
}

// A record set of transport.PlaceMin bytes or more begins a bundle: the
// secondary places a frame so that its first record set's data lies on
// page boundaries, and only the first's. The sets still go in order.
func TestALargeRecordSetBeginsABundle(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1", "ss2", "ss3"}})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Features: transport.FeatureBundles})
	waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })

	p.write(t, "ss1", make([]byte, volSize), 0)
	p.write(t, "ss2", make([]byte, volSize), 0)
	p.mover.Cut()
	var subs []string
	for len(subs) < 2 {
		b := l.bundle()
		if len(b.Sets) == 0 {
			continue // an interval's heartbeats
		}
		if len(b.Sets) != 1 {
			t.Fatalf("bundle of %d record sets: a large record set shares a frame", len(b.Sets))
		}
		rs, err := recordset.Decode(b.Sets[0], recordset.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, rs.Subsystem)
	}
	if subs[0] != "ss1" || subs[1] != "ss2" {
		t.Fatalf("record sets of %v, want ss1 then ss2", subs)
	}
}

// A cut whose large record sets begin frames of their own still travels
// in the order of its sets, the small ones after a large one in its frame,
// and an idle subsystem's heartbeat is never sent amid them: in the frame
// of the last set, or alone (a deferred cut sends its heartbeats ahead of
// its sets, which is harmless: a heartbeat counts only once the record
// sets through its Seq are in).
func TestASplitCutKeepsTheOrderOfItsSets(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1", "ss2", "ss3", "ss4"}})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Features: transport.FeatureBundles})
	waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })

	for _, c := range []struct {
		small []string // subsystems written 4 KiB, the others volSize
		want  [][]string
	}{
		{[]string{"ss1"}, [][]string{{"ss1"}, {"ss2"}, {"ss3"}}},
		{[]string{"ss2", "ss3"}, [][]string{{"ss1", "ss2", "ss3"}}},
		{[]string{"ss1", "ss3"}, [][]string{{"ss1"}, {"ss2", "ss3"}}},
	} {
		small := map[string]bool{}
		for _, ss := range c.small {
			small[ss] = true
		}
		for _, ss := range []string{"ss1", "ss2", "ss3"} {
			n := volSize
			if small[ss] {
				n = 4 << 10
			}
			p.write(t, ss, make([]byte, n), 0)
		}
		p.mover.Cut()
		var got [][]string
		for len(got) < len(c.want) {
			b := l.bundle()
			if len(b.Sets) == 0 {
				continue // heartbeats alone
			}
			var subs []string
			for _, set := range b.Sets {
				rs, err := recordset.Decode(set, recordset.DefaultLimits)
				if err != nil {
					t.Fatal(err)
				}
				subs = append(subs, rs.Subsystem)
			}
			got = append(got, subs)
			if len(b.Beats) > 0 && len(got) < len(c.want) {
				t.Fatalf("%v small: frame %d of %d (%v) carries heartbeats %+v amid the cut's sets", c.small, len(got), len(c.want), subs, b.Beats)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Fatalf("%v small: frames of %v, want %v", c.small, got, c.want)
		}
	}
}
