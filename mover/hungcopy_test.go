package mover

import (
	"bytes"
	"errors"
	"maps"
	"regexp"
	"testing"
	"time"

	"duplex/internal/testenv"
	"duplex/recordset"
	"duplex/subsystem"
	"duplex/transport"
)

// TestACopyWhoseReadHangsIsGivenUpAndTheOthersShip: a copy's read of the
// primary volume that hangs (a stuck disk under one pair's resync) holds
// the cut, and with it the record sets of every subsystem, only for
// Config.CopyReadWait: the cut then ships everything else it drained,
// without the copy, whose buffer is still the read's, and reports the copy
// given up (Abandoned) for its pair to be suspended and its region copied
// again. The copy never ships later: behind updates stamped after it, the
// secondary would apply its older data over theirs. Every record set stays
// complete through its horizon, the copy aside, and the sidefile room the
// copy took is given back.
func TestACopyWhoseReadHangsIsGivenUpAndTheOthersShip(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1", "ss2"}, copyReadWait: 100 * time.Millisecond})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Through: map[string]uint64{"ss1": 0, "ss2": 0}})
	p.write(t, "ss1", bytes.Repeat([]byte{0x11}, 4096), 0) // not a hole: the copy reads it
	// Taken with ss1, in the same cut.
	p.write(t, "ss2", bytes.Repeat([]byte{0x21}, 4096), 0)
	release, copied, cut := p.cutDuringCopy(t, "ss1", 0, 4096)

	select {
	case <-cut:
	case <-time.After(deadline):
		t.Fatal("the cut still waits for a copy's hung read: no record set of any subsystem ships")
	}
	through := map[string]uint64{}
	check := func(rs *recordset.RecordSet) {
		t.Helper()
		for _, u := range rs.Updates {
			if u.Kind == recordset.KindCopy {
				t.Fatalf("record set %s/%d ships the copy whose read was given up", rs.Subsystem, rs.Seq)
			}
			if u.Timestamp > rs.Horizon {
				t.Fatalf("record set %s/%d holds an update stamped %d after its horizon %d", rs.Subsystem, rs.Seq, u.Timestamp, rs.Horizon)
			}
		}
		if rs.Seq != through[rs.Subsystem]+1 {
			t.Fatalf("record set %s/%d after %d", rs.Subsystem, rs.Seq, through[rs.Subsystem])
		}
		through[rs.Subsystem] = rs.Seq
	}
	sets := l.recordSets(2)
	check(sets["ss1"])
	check(sets["ss2"])
	if us := sets["ss2"].Updates; len(us) != 1 || us[0].Data[0] != 0x21 {
		t.Fatalf("ss2's record set holds %+v, want its write", us)
	}
	lost := p.mover.Abandoned()
	if len(lost) != 1 || lost[0].Volume != volName("ss1") || lost[0].Offset != 0 || lost[0].Length != 4096 || lost[0].Kind != recordset.KindCopy {
		t.Fatalf("copies given up: %+v, want the copy of [0, +4096) of %s", lost, volName("ss1"))
	}
	if again := p.mover.Abandoned(); len(again) != 0 {
		t.Fatalf("copies given up reported twice: %+v", again)
	}

	// Cuts go on while the read still hangs.
	p.write(t, "ss1", bytes.Repeat([]byte{0x12}, 4096), 8192)
	p.write(t, "ss2", bytes.Repeat([]byte{0x22}, 4096), 4096)
	p.mover.Cut()
	sets = l.recordSets(2)
	check(sets["ss1"])
	check(sets["ss2"])
	if len(sets["ss1"].Updates) != 1 || len(sets["ss2"].Updates) != 1 {
		t.Fatalf("second cut: ss1 %+v, ss2 %+v, want one write each", sets["ss1"].Updates, sets["ss2"].Updates)
	}

	// The read ends at last: the copy says it was given up, so that its
	// copier does not take its region for copied, and it never ships.
	release()
	if err := <-copied; !errors.Is(err, subsystem.ErrCopyAbandoned) {
		t.Fatalf("the copy given up returned %v, want ErrCopyAbandoned", err)
	}
	p.mover.Cut()
	for _, rs := range l.recordSets(2) {
		check(rs)
	}
	l.ack(transport.Position{Through: maps.Clone(through)})
	waitFor(t, "the sidefiles to be empty once everything shipped is acknowledged", func() bool {
		return p.used("ss1") == 0 && p.used("ss2") == 0
	})
}

// TestACutWaitsForTheHungReadsOfSeveralSubsystemsTogether: the copies'
// reads of two subsystems hang (a stuck disk under each, as at a start
// after a crash whose recovery copies hung on two controllers). The cut
// waits for them CopyReadWait once, for both together: one subsystem after
// the other, K stuck controllers would hold every record set (and the
// writers, once the sidefiles fill) K waits. The test ends the first wait
// only; the cut must then give both copies up.
func TestACutWaitsForTheHungReadsOfSeveralSubsystemsTogether(t *testing.T) {
	waits := make(chan chan time.Time, 8)
	p := startPrimary(t, options{subsystems: []string{"ss1", "ss2"}, copyReadWait: time.Hour,
		copyReadTimer: func(time.Duration) <-chan time.Time {
			ch := make(chan time.Time, 1)
			waits <- ch
			return ch
		}})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Through: map[string]uint64{"ss1": 0, "ss2": 0}})
	p.write(t, "ss1", bytes.Repeat([]byte{0x11}, 4096), 0)
	p.write(t, "ss2", bytes.Repeat([]byte{0x21}, 4096), 0)
	p.mover.Cut()
	l.recordSets(2)
	p.hangCopy(t, "ss1", 0, 4096)
	p.hangCopy(t, "ss2", 0, 4096)
	cut := make(chan struct{})
	go func() {
		p.mover.Cut()
		close(cut)
	}()
	select {
	case first := <-waits:
		first <- time.Now()
	case <-time.After(deadline):
		t.Fatal("the cut does not wait for the copies' hung reads")
	}
	select {
	case <-cut:
	case <-waits:
		t.Fatal("the first wait ended, the cut waits again for the other subsystem's hung read: one wait per stuck subsystem, after each other")
	case <-time.After(deadline):
		t.Fatal("the cut still waits after its wait for the hung reads ended")
	}
	lost := p.mover.Abandoned()
	if len(lost) != 2 || lost[0].Volume == lost[1].Volume {
		t.Fatalf("copies given up: %+v, want the copy of each subsystem", lost)
	}
	sets := l.recordSets(2)
	for _, ss := range []string{"ss1", "ss2"} {
		for _, u := range sets[ss].Updates {
			if u.Kind == recordset.KindCopy {
				t.Fatalf("record set of %s ships the copy whose read was given up", ss)
			}
		}
	}
}

// TestADropDoesNotWaitForACopysRead: Drop hands every update it drops to
// mark, a copy still reading its data among them; it needs the copy's
// region, not its data, and must not wait for a read that hangs: the
// session suspends itself by a Drop when the link stays down with a full
// sidefile, and writers wait until it does.
func TestADropDoesNotWaitForACopysRead(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}, copyReadWait: -1})
	p.write(t, "ss1", bytes.Repeat([]byte{0x11}, 4096), 0)
	release, copied := p.hangCopy(t, "ss1", 0, 4096)
	ups, kinds := p.drop(t, "Drop waits for a copy's hung read")
	if len(ups) != 2 || kinds[recordset.KindWrite] != 1 || kinds[recordset.KindCopy] != 1 {
		t.Fatalf("Drop marked %+v, want the write and the copy", ups)
	}
	if got := p.used("ss1"); got != 0 {
		t.Fatalf("the sidefile holds %d bytes after the Drop", got)
	}
	droppedWhileReading(t, release, copied)
}

// TestACutGivesUpAtOnceACopyReadingLongerThanItsWait: a copy's wait for
// its read is timed from its capture, not from the cut that takes it. At a
// start after a crash the start waits CopyReadWait for the recovery
// copies' reads and gives up those that hang; the first cut takes those
// same copies, and a wait of its own would hold every record set (and the
// writers, once the sidefiles fill) a second CopyReadWait for reads
// already given up. Here the copy's read has hung longer than
// CopyReadWait when the cut takes it: the cut must give it up without a
// wait, and its log says so: the cut waited no time, not CopyReadWait.
func TestACutGivesUpAtOnceACopyReadingLongerThanItsWait(t *testing.T) {
	const wait = 50 * time.Millisecond
	waits := make(chan time.Duration, 8)
	var log testenv.LogBuffer
	p := startPrimary(t, options{subsystems: []string{"ss1", "ss2"}, copyReadWait: wait, log: &log,
		copyReadTimer: func(d time.Duration) <-chan time.Time {
			waits <- d
			return nil // ends when the test fails
		}})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Through: map[string]uint64{"ss1": 0, "ss2": 0}})
	p.write(t, "ss1", bytes.Repeat([]byte{0x11}, 4096), 0)
	p.mover.Cut()
	l.recordSets(2)
	p.hangCopy(t, "ss1", 0, 4096)
	p.write(t, "ss2", bytes.Repeat([]byte{0x21}, 4096), 0)
	time.Sleep(2 * wait) // the read outlasts its wait before any cut takes it
	cut := make(chan struct{})
	go func() {
		p.mover.Cut()
		close(cut)
	}()
	select {
	case <-cut:
	case d := <-waits:
		t.Fatalf("the cut waits %v more for a copy's read that has hung longer than CopyReadWait (%v) since its capture", d, wait)
	case <-time.After(deadline):
		t.Fatal("the cut does not end")
	}
	lost := p.mover.Abandoned()
	if len(lost) != 1 || lost[0].Volume != volName("ss1") || lost[0].Kind != recordset.KindCopy {
		t.Fatalf("copies given up: %+v, want the copy of %s", lost, volName("ss1"))
	}
	if waited := loggedWait(t, log.String()); waited >= wait {
		t.Fatalf("the cut that gave the copy up at once logs that it waited %v (CopyReadWait %v)", waited, wait)
	}
	sets := l.recordSets(2)
	if len(sets["ss1"].Updates) != 0 {
		t.Fatalf("ss1's record set holds %+v, want nothing: its copy was given up", sets["ss1"].Updates)
	}
	if us := sets["ss2"].Updates; len(us) != 1 || us[0].Data[0] != 0x21 {
		t.Fatalf("ss2's record set holds %+v, want its write", us)
	}
}

// loggedWait returns the time waited that the log of a copy given up says.
func loggedWait(t *testing.T, log string) time.Duration {
	t.Helper()
	m := regexp.MustCompile(`copy given up.* waited=(\S+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no copy given up logged with the time waited: %q", log)
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatalf("the log of a copy given up: waited=%s: %v", m[1], err)
	}
	return d
}

// TestADropDoesNotWaitForACutWaitingOnAHungRead: a cut waits for a copy's
// read that hangs (up to CopyReadWait, 30s by default), and the session
// suspends itself meanwhile (the link down with a full sidefile, or a
// record set refused as stale): its Drop, which the suspension and every
// resume wait for, must not wait for the cut's wait to run out. (A
// suspension by the operator drops nothing, and waits for no cut.) The copy
// still reading is given up and handed to mark with the rest, its region
// to be copied again by the resync, not reported given up for a read
// that outlasted its wait: nothing waited that long.
func TestADropDoesNotWaitForACutWaitingOnAHungRead(t *testing.T) {
	waiting := make(chan struct{}, 8)
	p := startPrimary(t, options{subsystems: []string{"ss1", "ss2"}, copyReadWait: time.Hour,
		copyReadTimer: func(time.Duration) <-chan time.Time {
			waiting <- struct{}{}
			return nil // the read's wait never runs out here
		}})
	p.write(t, "ss1", bytes.Repeat([]byte{0x11}, 4096), 0)
	p.write(t, "ss2", bytes.Repeat([]byte{0x21}, 4096), 0)
	release, copied, cut := p.cutDuringCopy(t, "ss1", 0, 4096)
	select {
	case <-waiting:
	case <-time.After(deadline):
		t.Fatal("the cut does not wait for the copy's hung read")
	}
	ups, kinds := p.drop(t, "the Drop still waits for a cut that waits on a copy's hung read")
	select {
	case <-cut:
	case <-time.After(deadline):
		t.Fatal("the cut still waits for the copy's hung read after the Drop")
	}
	if len(ups) != 3 || kinds[recordset.KindWrite] != 2 || kinds[recordset.KindCopy] != 1 {
		t.Fatalf("Drop marked %+v, want both writes and the copy", ups)
	}
	if lost := p.mover.Abandoned(); len(lost) != 0 {
		t.Fatalf("copies reported given up for their read's wait: %+v, want none: the Drop took the copy", lost)
	}
	if a, b := p.used("ss1"), p.used("ss2"); a != 0 || b != 0 {
		t.Fatalf("the sidefiles hold %d and %d bytes after the Drop", a, b)
	}
	droppedWhileReading(t, release, copied)
}

// drop runs a Drop and returns the updates it marked, and how many of
// each kind; it fails, saying stuck, if the Drop has not returned by the
// deadline.
func (p *primary) drop(t *testing.T, stuck string) ([]recordset.Update, map[recordset.Kind]int) {
	t.Helper()
	dropped := make(chan []recordset.Update, 1)
	go func() {
		var ups []recordset.Update
		p.mover.Drop(func(u recordset.Update) { ups = append(ups, u) })
		dropped <- ups
	}()
	var ups []recordset.Update
	select {
	case ups = <-dropped:
	case <-time.After(deadline):
		t.Fatalf("%s after %v", stuck, deadline)
	}
	kinds := map[recordset.Kind]int{}
	for _, u := range ups {
		kinds[u.Kind]++
	}
	return ups, kinds
}

// droppedWhileReading ends the hung read of a copy a Drop took, and fails
// unless the copy then says it was given up.
func droppedWhileReading(t *testing.T, release func(), copied <-chan error) {
	t.Helper()
	release()
	if err := <-copied; !errors.Is(err, subsystem.ErrCopyAbandoned) {
		t.Fatalf("the copy dropped while reading returned %v, want ErrCopyAbandoned", err)
	}
}
