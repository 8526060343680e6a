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

// smallLimits carry one update of the largest size (4 MiB) and little more.
var smallLimits = transport.Limits{MaxHeader: 64 << 10, MaxPayload: 4<<20 + 512<<10, MaxRecords: 100, MaxFrame: 5 << 20}

func recordsetLimits(l transport.Limits) recordset.Limits {
	return recordset.Limits{MaxHeader: int(l.MaxHeader), MaxPayload: int(l.MaxPayload), MaxRecords: int(l.MaxRecords)}
}

// Record sets formed before the Welcome, to the limits assumed, are
// re-formed to the limits the secondary announces: everything arrives in
// order, numbered on from what the secondary journaled, none refused.
func TestHeldRecordSetsReformedToAnnouncedLimits(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}, sidefile: 64 << 20})
	const n = 8
	for i := range n {
		p.write(t, "ss1", bytes.Repeat([]byte{byte(i)}, volSize), 0)
	}
	p.mover.Cut() // one record set of 8 MiB: the defaults take it
	l, _ := p.accept(t)
	l.welcome(transport.Position{Through: map[string]uint64{"ss1": 10}, Limits: smallLimits})
	sets, ups := receiveUpdates(t, l, recordsetLimits(smallLimits), 11, n)
	if len(sets) < 2 {
		t.Fatalf("%d MiB in %d record set, with a payload limit of 4.5 MiB", n, len(sets))
	}
	for i, u := range ups {
		if u.Data[0] != byte(i) {
			t.Fatalf("update %d carries the data of write %d", i, u.Data[0])
		}
	}
	// New record sets are formed to the announced limits too.
	for i := range n {
		p.write(t, "ss1", bytes.Repeat([]byte{byte(n + i)}, volSize), 0)
	}
	p.mover.Cut()
	more, _ := receiveUpdates(t, l, recordsetLimits(smallLimits), sets[len(sets)-1].Seq+1, n)
	l.ack(transport.Position{Group: 1, Through: map[string]uint64{"ss1": more[len(more)-1].Seq}})
	waitFor(t, "the sidefile to be released", func() bool { return p.used("ss1") == 0 && p.mover.Stats().HeldSets == 0 })
}

// A secondary that holds record sets beyond what it journaled, and
// announces limits that one of the held sets exceeds: re-formed sets would
// be numbered into the range it holds, so the mover reconnects under a new
// instance (the secondary then discards what it held) and sends everything
// not journaled re-formed.
func TestReformBeyondWhatTheSecondaryHoldsTakesANewInstance(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}, sidefile: 64 << 20})
	l, h1 := p.accept(t)
	l.welcome(transport.Position{})
	p.write(t, "ss1", []byte{0xaa}, 0)
	p.mover.Cut()
	if rs := l.recordSet(); rs.Seq != 1 {
		t.Fatalf("record set %d, want 1", rs.Seq)
	}
	l.ack(transport.Position{Received: map[string]uint64{"ss1": 1}})
	waitFor(t, "the receipt", func() bool { return p.mover.Stats().Connected })
	l.conn.Close()
	for i := range 8 {
		p.write(t, "ss1", bytes.Repeat([]byte{byte(i)}, volSize), 0)
	}
	p.mover.Cut()

	l2, h2 := p.accept(t)
	if h2.Instance != h1.Instance {
		t.Fatalf("instance changed across a plain reconnect")
	}
	l2.welcome(transport.Position{Received: map[string]uint64{"ss1": 1}, Limits: smallLimits})
	l2.awaitClosed()

	l3, h3 := p.accept(t)
	if h3.Instance == h2.Instance {
		t.Fatalf("reconnected under the same instance %d: the secondary keeps its set 1 and the re-formed ones clash with it", h3.Instance)
	}
	l3.welcome(transport.Position{Limits: smallLimits})
	_, ups := receiveUpdates(t, l3, recordsetLimits(smallLimits), 1, 9)
	if ups[0].Data[0] != 0xaa {
		t.Fatalf("first update carries %x, want the first write", ups[0].Data[0])
	}
	for i, u := range ups[1:] {
		if u.Data[0] != byte(i) {
			t.Fatalf("update %d carries the data of write %d", i+1, u.Data[0])
		}
	}
}
