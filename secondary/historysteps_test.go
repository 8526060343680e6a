package secondary

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"duplex/consistency"
	"duplex/history"
	"duplex/recordset"
)

// stampedWrite is a write of byte b over block blk stamped ts.
type stampedWrite struct {
	blk uint64
	b   byte
	ts  int64
}

// sendStamped sends record set seq with the given horizon and writes.
func (r *gateRig) sendStamped(t *testing.T, seq uint64, horizon int64, ws []stampedWrite) {
	t.Helper()
	rs := &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: seq, Group: seq, ReadTime: horizon, Horizon: horizon}
	for i, w := range ws {
		u := blockWrite(w.blk, w.b)
		u.Timestamp, u.Seq = w.ts, 100*seq+uint64(i)
		rs.Updates = append(rs.Updates, u)
	}
	r.sendRecordSet(t, rs)
}

// imageAt is the first byte of blocks 0..n-1 once every write stamped at or
// before limit is applied over a volume of 0xEE.
func imageAt(ws []stampedWrite, n int, limit int64) []byte {
	img := bytes.Repeat([]byte{0xEE}, n)
	for _, w := range ws {
		if w.ts <= limit {
			img[w.blk] = w.b
		}
	}
	return img
}

// firstBytes is the first byte of blocks 0..n-1 as read reads them.
func firstBytes(t *testing.T, read func(p []byte, off int64) error, n int) []byte {
	t.Helper()
	img := make([]byte, n)
	b := make([]byte, 4096)
	for blk := range n {
		if err := read(b, int64(blk)*4096); err != nil {
			t.Fatal(err)
		}
		img[blk] = b[0]
	}
	return img
}

// manyBlocks are the blocks sendManyIntervals writes, from block 0.
const manyBlocks = 30

// sendManyIntervals sends group 1, vol1's first copy, whole, with block 2
// written before 1 ms (the pair is duplex from then on), and group 2, one
// record set from 1 ms to 200 ms: a write every 5 ms, some of them over
// blocks written earlier in the group. It returns every write.
func (r *gateRig) sendManyIntervals(t *testing.T) []stampedWrite {
	t.Helper()
	ms := int64(time.Millisecond)
	var long []stampedWrite
	for i := 1; i < 40; i++ {
		long = append(long, stampedWrite{blk: 3 + uint64(i%25), b: byte(i + 1), ts: int64(i) * 5 * ms})
	}
	r.sendSet(t, 1, []recordset.Update{recordset.Marker{State: recordset.StateFirstCopy, Bytes: 4096}.Update("vol1"), blockWrite(2, 1),
		recordset.Marker{State: recordset.StateCopyEnd}.Update("vol1")})
	r.sendStamped(t, 2, 200*ms, long)
	return append([]stampedWrite{{blk: 2, b: 1, ts: ms - 2}}, long...)
}

// A group formed while the secondary was behind spans many intervals: the
// primary grows a record set that is not yet on the wire, and the
// secondary forms one group of all it received. Every time inside such a
// group is a consistency time too (each subsystem's horizon passed it), and
// the updates of the group stamped at or before it are a prefix of the
// group. recover --at T, and a view of T, must reach within an interval of
// T whatever the groups' length: the volumes hold every write stamped at or
// before T - interval and none stamped after T, also after a restart
// between recoveries.
func TestRecoverToInsideAGroupOfManyIntervals(t *testing.T) {
	dir := t.TempDir()
	fillVolume(t, dir)
	hist := historyOf(dir)
	const interval = 10 * time.Millisecond
	hist.Interval = interval
	ms := int64(time.Millisecond)
	r := openGateRigWith(t, dir, nil, hist)
	all := r.sendManyIntervals(t)
	const blocks = manyBlocks
	r.waitApplied(t, 2)

	check := func(what string, at, reached int64, got []byte) {
		t.Helper()
		if reached > at {
			t.Errorf("%s %v: reached %v, after it", what, time.Duration(at), time.Duration(reached))
		}
		if want := imageAt(all, blocks, reached); !bytes.Equal(got, want) {
			t.Errorf("%s %v: reached %v, but the blocks hold\n%v, want the writes through it\n%v", what, time.Duration(at), time.Duration(reached), got, want)
		}
		for _, w := range all {
			if w.ts > reached && w.ts <= at-int64(interval) {
				t.Errorf("%s %v: reached %v, without the write stamped %v, more than an interval (%v) before it",
					what, time.Duration(at), time.Duration(reached), time.Duration(w.ts), interval)
			}
		}
	}
	for _, at := range []int64{57 * ms, 123 * ms, 9 * ms} {
		v, err := r.sec.PinAt(at)
		if err != nil {
			t.Fatal(err)
		}
		img := firstBytes(t, func(p []byte, off int64) error { return v.ReadAt("vol1", p, off) }, blocks)
		check("a view of", at, v.Time, img)
		v.Close()
	}
	if _, err := r.sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	r.close(t)

	// Newest first, with a restart between recoveries.
	for _, at := range []int64{157 * ms, 57 * ms, 33 * ms, 12 * ms, 3 * ms} {
		sec, v := openStopped(t, dir, hist)
		st, err := sec.RecoverTo(at)
		if err != nil {
			t.Fatal(err)
		}
		img := firstBytes(t, func(p []byte, off int64) error { return sec.ReadAt("vol1", p, off) }, blocks)
		check(fmt.Sprintf("recover --at (group %d)", st.Group), at, st.Time, img)
		if err := sec.Close(); err != nil {
			t.Fatal(err)
		}
		v.Close()
	}
}

// The points historySteps gives a group: one per interval of its updates,
// one at its last update when the group's time is an interval or more
// after the last step began, and a single one for a group that carries a
// pair state change.
func TestHistorySteps(t *testing.T) {
	ms := int64(time.Millisecond)
	group := func(end int64, stamps ...int64) *consistency.Group {
		g := &consistency.Group{Number: 3, Time: end * ms}
		for i, ts := range stamps {
			u := blockWrite(uint64(i), byte(i))
			u.Timestamp = ts * ms
			g.Updates = append(g.Updates, u)
		}
		return g
	}
	times := func(steps []history.Step) []int64 {
		var out []int64
		for _, st := range steps {
			out = append(out, st.Time/ms)
		}
		return out
	}
	for _, c := range []struct {
		name string
		g    *consistency.Group
		iv   time.Duration
		want []int64
	}{
		{"within an interval", group(20, 3, 9, 15), 20 * time.Millisecond, []int64{20}},
		{"no interval", group(200, 3, 90, 150), 0, []int64{200}},
		{"many intervals", group(100, 5, 10, 15, 20, 40, 95), 10 * time.Millisecond, []int64{10, 20, 40, 100}},
		{"idle before its time", group(100, 5, 8), 10 * time.Millisecond, []int64{8, 100}},
		{"last update at its time", group(100, 5, 100), 10 * time.Millisecond, []int64{5, 100}},
	} {
		if got := times(historySteps(c.g, c.iv, false)); !slices.Equal(got, c.want) {
			t.Errorf("%s: points at %v ms, want %v", c.name, got, c.want)
		}
	}
	g := group(100, 5, 50, 95)
	g.Updates = append(g.Updates[:1], append([]recordset.Update{recordset.Marker{State: recordset.StateSuspended}.Update("vol1")}, g.Updates[1:]...)...)
	g.Updates[1].Timestamp = 30 * ms
	if got := times(historySteps(g, 10*time.Millisecond, false)); !slices.Equal(got, []int64{100}) {
		t.Errorf("a group with a pair state change: points at %v ms, want one, at its time", got)
	}
	if got := times(historySteps(group(100, 5, 50, 95), 10*time.Millisecond, true)); !slices.Equal(got, []int64{100}) {
		t.Errorf("a group kept whole: points at %v ms, want one, at its time", got)
	}
}
