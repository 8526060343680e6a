package mover

import (
	"bytes"
	"context"
	"testing"

	"duplex/recordset"
	"duplex/transport"
)

// receiveUpdates reads record sets of ss1 until want updates have arrived,
// decoding each with lim as the secondary would, and checks that the
// numbering is contiguous from first and that no set claims completeness
// past the updates it and its predecessors carry.
func receiveUpdates(t *testing.T, l *link, lim recordset.Limits, first uint64, want int) ([]*recordset.RecordSet, []recordset.Update) {
	t.Helper()
	var sets []*recordset.RecordSet
	var ups []recordset.Update
	for len(ups) < want {
		typ, body := l.next()
		if typ != transport.TypeRecordSet {
			t.Fatalf("frame of type %d, want a record set", typ)
		}
		rs, err := recordset.Decode(body, lim)
		if err != nil {
			t.Fatalf("record set %d received: the secondary would reject it: %v", len(sets)+1, err)
		}
		if rs.Seq != first+uint64(len(sets)) {
			t.Fatalf("record set %d, want %d", rs.Seq, first+uint64(len(sets)))
		}
		if len(sets) > 0 {
			prev := sets[len(sets)-1]
			if rs.Horizon < prev.Horizon {
				t.Fatalf("set %d horizon %d before set %d's %d", rs.Seq, rs.Horizon, prev.Seq, prev.Horizon)
			}
			if len(rs.Updates) > 0 && rs.Lowest() <= prev.Horizon {
				t.Fatalf("set %d claims completeness through %d, but set %d carries an update stamped %d: "+
					"the secondary could form a group without it", prev.Seq, prev.Horizon, rs.Seq, rs.Lowest())
			}
		}
		sets = append(sets, rs)
		ups = append(ups, rs.Updates...)
		// Receipts open the window for the next parts.
		l.ack(transport.Position{Received: map[string]uint64{"ss1": rs.Seq}})
	}
	if len(ups) != want {
		t.Fatalf("%d updates, want %d", len(ups), want)
	}
	return sets, ups
}

// One interval's drain larger than the secondary accepts in a record set (as
// after a primary crash with many logged regions) goes as several record sets,
// each within the receiver's limits; each but the last is complete only
// through its own last update.
func TestCutSplitsRecordSetsToReceiverLimits(t *testing.T) {
	lim := recordset.Limits{MaxPayload: 64 << 10}
	p := startPrimary(t, options{subsystems: []string{"ss1"}, limits: lim})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Through: map[string]uint64{"ss1": 10}})
	const n = 20
	for i := range n {
		p.write(t, "ss1", bytes.Repeat([]byte{byte(i)}, 16<<10), int64(i)*(16<<10)%volSize)
	}
	p.mover.Cut()
	sets, ups := receiveUpdates(t, l, lim, 11, n)
	if len(sets) < 5 {
		t.Fatalf("%d record sets for %d KiB with a 64 KiB payload limit", len(sets), n*16)
	}
	for i, u := range ups {
		if u.Data[0] != byte(i) {
			t.Fatalf("update %d carries the data of write %d", i, u.Data[0])
		}
	}
	for _, rs := range sets[:len(sets)-1] {
		if rs.Horizon != rs.Highest() {
			t.Errorf("set %d: horizon %d, want its last update's stamp %d", rs.Seq, rs.Horizon, rs.Highest())
		}
	}
	// Acknowledging every part releases the whole sidefile.
	l.ack(transport.Position{Group: 1, Through: map[string]uint64{"ss1": sets[len(sets)-1].Seq}})
	waitFor(t, "the sidefile to be released", func() bool { return p.used("ss1") == 0 })
}

// Many updates without data are bounded by the header and record limits.
func TestCutSplitsManySmallUpdates(t *testing.T) {
	lim := recordset.Limits{MaxHeader: 4 << 10, MaxRecords: 50}
	p := startPrimary(t, options{subsystems: []string{"ss1"}, limits: lim})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	const n = 500
	for i := range n {
		if err := p.subs["ss1"].WriteZeroes(context.Background(), volName("ss1"), int64(i)*512, 512); err != nil {
			t.Fatal(err)
		}
	}
	p.mover.Cut()
	sets, _ := receiveUpdates(t, l, lim, 1, n)
	if len(sets) < n/50 {
		t.Fatalf("%d record sets for %d updates at most 50 per set", len(sets), n)
	}
}

// Cuts while the link is down grow the waiting record set only as far as the
// receiver accepts; the rest waits in further record sets.
func TestCoalescingRespectsReceiverLimits(t *testing.T) {
	lim := recordset.Limits{MaxPayload: 40 << 10}
	p := startPrimary(t, options{subsystems: []string{"ss1"}, limits: lim})
	const cuts, per = 8, 3
	for c := range cuts {
		for i := range per {
			p.write(t, "ss1", bytes.Repeat([]byte{byte(c*per + i)}, 8<<10), int64(c*per+i)*(8<<10)%volSize)
		}
		p.mover.Cut()
	}
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	_, ups := receiveUpdates(t, l, lim, 1, cuts*per)
	for i, u := range ups {
		if u.Data[0] != byte(i) {
			t.Fatalf("update %d carries the data of write %d", i, u.Data[0])
		}
	}
}

// The default limits the secondary decodes with fit a TCP frame with room
// for the frame type and seal.
func TestDefaultLimitsFitTransportFrame(t *testing.T) {
	lim := recordset.DefaultLimits
	if got, max := lim.MaxHeader+lim.MaxPayload+64, transport.DefaultMaxFrame; got > max {
		t.Fatalf("a record set of %d bytes would exceed the TCP frame limit %d", got, max)
	}
}

// The scenario of a primary crash recovery: 70 hot 1 MiB regions copied in
// a subsystem with the default sidefile are drained by one cut, more than
// the secondary's default payload limit.
func TestCutAfterCrashRecoveryFitsDefaultLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 70 MiB")
	}
	p := startPrimary(t, options{subsystems: []string{"ss1"}, sidefile: 256 << 20})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	const regions = 70
	for i := range regions {
		p.write(t, "ss1", bytes.Repeat([]byte{byte(i)}, volSize), 0)
	}
	p.mover.Cut()
	sets, ups := receiveUpdates(t, l, recordset.DefaultLimits, 1, regions)
	if len(sets) < 2 {
		t.Fatalf("%d MiB in %d record set", regions, len(sets))
	}
	for i, u := range ups {
		if len(u.Data) != volSize || u.Data[volSize-1] != byte(i) {
			t.Fatalf("update %d: %d bytes of %d", i, len(u.Data), u.Data[0])
		}
	}
}
