package mover

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/transport"
	"duplex/volume"
)

// Only a burst's record sets wait, only while the sidefile has room, and
// only for Config.BurstWait from their reading: a steady rate's, which
// are the lag, never do.
func TestOnlyABurstWaitsWithRoomAndWithinItsBound(t *testing.T) {
	side := sidefile.New(64 << 20)
	ss := subsystem.New("ss1", timer.New(), side, map[string]*volume.Volume{}, nil)
	m := New(Config{Session: session, Subsystems: []*subsystem.Subsystem{ss}})
	iv := m.cfg.Interval
	now := time.Hour
	h := &held{rs: &recordset.RecordSet{}, first: now}
	m.queue = []*held{{gone: true}, h}
	m.cutAt = now - iv
	m.cutBurst(deferFrom-1, now)
	if _, ok := m.deferral(now); ok {
		t.Error("record sets wait after a cut lighter than deferFrom")
	}
	m.cutBurst(deferFrom, now+3*iv)
	if _, ok := m.deferral(now + 3*iv); ok {
		t.Error("record sets wait after a cut of deferFrom over three intervals: a steady rate's, late")
	}
	m.cutBurst(deferFrom, now+4*iv)
	now += 4 * iv
	h.first = now
	left, ok := m.deferral(now)
	if !ok {
		t.Fatal("a burst's record sets do not wait with an empty sidefile")
	}
	if want := m.cfg.BurstWait; left != want {
		t.Errorf("they wait %v, want %v (BurstWait from their reading)", left, want)
	}
	m.cutBurst(0, now+iv)
	if _, ok := m.deferral(now + deferQuiet*iv); !ok {
		t.Error("record sets do not wait after one light cut in a burst")
	}
	// A writer descheduled on a busy CPU leaves a gap of several
	// intervals in the middle of its burst.
	if _, ok := m.deferral(now + 150*time.Millisecond); !ok {
		t.Errorf("record sets do not wait 150 ms (%d intervals) after the burst's last heavy cut", 150*time.Millisecond/iv)
	}
	if _, ok := m.deferral(now + m.quietFor()); !ok {
		t.Errorf("record sets do not wait %v after the burst's last heavy cut", m.quietFor())
	}
	if _, ok := m.deferral(now + m.quietFor() + iv); ok {
		t.Errorf("record sets wait %v after the burst's last heavy cut", m.quietFor()+iv)
	}
	if _, ok := m.deferral(now + m.cfg.BurstWait); ok {
		t.Error("record sets read BurstWait ago wait")
	}
	m.resend = []*held{h}
	if _, ok := m.deferral(now); ok {
		t.Error("record sets wait with a retransmission due")
	}
	m.resend = nil
	m.quiescing = 1
	if _, ok := m.deferral(now); ok {
		t.Error("record sets wait while a Quiesce is under way")
	}
	m.quiescing = 0
	side.Take(int64(deferFill*float64(side.Unpaced())) + 1)
	if _, ok := m.deferral(now); ok {
		t.Errorf("record sets wait with the sidefile at %d of the %d bytes it holds unpaced", side.Stats().Used, side.Unpaced())
	}
	m.cfg.BurstWait = -1
	side.Release(side.Stats().Used)
	if _, ok := m.deferral(now); ok {
		t.Error("record sets wait with BurstWait negative")
	}
}

// burstRig is a primary whose ss1 takes bursts and ss2 stays idle, linked
// to a secondary that takes bundles; deferred is told of every turn whose
// record sets wait.
type burstRig struct {
	*primary
	l        *link
	deferred chan struct{}
}

func startBurstRig(t *testing.T, o options) *burstRig {
	t.Helper()
	r := &burstRig{deferred: make(chan struct{}, 1024)}
	o.hook = func(point string) {
		if point == "deferred" {
			r.deferred <- struct{}{}
		}
	}
	if o.sidefile == 0 {
		o.sidefile = 256 << 20
	}
	r.primary = startPrimary(t, o)
	r.l, _ = r.accept(t)
	r.l.welcome(transport.Position{Features: transport.FeatureBundles})
	waitFor(t, "the link", func() bool { return r.mover.Stats().Connected })
	return r
}

// burst writes n MiB to ss1, the first byte of each MiB numbered on from
// *next, and cuts.
func (r *burstRig) burst(t *testing.T, n int, next *int) {
	t.Helper()
	data := make([]byte, 1<<20)
	for range n {
		data[0] = byte(*next)
		*next++
		r.write(t, "ss1", data, 0)
	}
	r.mover.Cut()
}

// waited waits for a turn whose record sets wait.
func (r *burstRig) waited(t *testing.T) {
	t.Helper()
	select {
	case <-r.deferred:
	case <-time.After(deadline):
		t.Fatal("the burst's record sets did not wait")
	}
}

// bundleSets returns the record sets and heartbeats of the next bundle.
func (l *link) bundleSets() ([]*recordset.RecordSet, []transport.Heartbeat) {
	l.t.Helper()
	b := l.bundle()
	var sets []*recordset.RecordSet
	for _, set := range b.Sets {
		rs, err := recordset.Decode(set, recordset.DefaultLimits)
		if err != nil {
			l.t.Fatalf("record set: %v", err)
		}
		sets = append(sets, rs)
	}
	return sets, b.Beats
}

// updatesOf receives bundles until n of ss1's updates have come, and
// checks that they come whole, numbered on from seq 1, and in the order
// written (the first byte of each numbered from 0).
func (l *link) updatesOf(n int) {
	l.t.Helper()
	got, seq := 0, uint64(0)
	for got < n {
		sets, _ := l.bundleSets()
		for _, rs := range sets {
			if rs.Subsystem != "ss1" {
				continue
			}
			if seq++; rs.Seq != seq {
				l.t.Fatalf("record set %d of ss1 after %d", rs.Seq, seq-1)
			}
			for _, u := range rs.Updates {
				if len(u.Data) != 1<<20 || u.Data[0] != byte(got) {
					l.t.Fatalf("update %d of ss1: %d bytes numbered %d", got, len(u.Data), u.Data[0])
				}
				got++
			}
		}
	}
	if got != n {
		l.t.Fatalf("%d updates of ss1, want %d", got, n)
	}
}

// TestABurstWaitsThenGoesWholeAndInOrder: a burst's record sets wait while
// its cuts bring a burst's weight, and go, every update in order, once
// none has for quietFor: the writes have slowed.
func TestABurstWaitsThenGoesWholeAndInOrder(t *testing.T) {
	r := startBurstRig(t, options{burstWait: time.Hour})
	next := 0
	r.burst(t, 5, &next)
	r.waited(t)
	r.burst(t, 5, &next)
	r.waited(t)
	if sent := r.mover.Stats().BytesSent; sent > 1<<20 {
		t.Fatalf("%d bytes sent during the burst", sent)
	}
	r.mover.mu.Lock()
	r.mover.burstAt = r.mover.elapsed() - r.mover.quietFor() - r.mover.cfg.Interval
	r.mover.mu.Unlock()
	r.mover.Cut()
	r.l.updatesOf(10)
}

// TestABurstWaitsNoLongerThanBurstWait: with the writes going on, a
// burst's record sets go once the oldest was read BurstWait ago.
func TestABurstWaitsNoLongerThanBurstWait(t *testing.T) {
	r := startBurstRig(t, options{burstWait: 50 * time.Millisecond})
	next := 0
	r.burst(t, 5, &next)
	r.waited(t)
	r.l.updatesOf(5)
}

// TestHeartbeatsGoWhileABurstWaits: the idle subsystem's heartbeats go in
// every turn while the burst's record sets wait, its horizon rising.
func TestHeartbeatsGoWhileABurstWaits(t *testing.T) {
	r := startBurstRig(t, options{burstWait: time.Hour})
	next := 0
	var horizon int64
	for i := range 3 {
		r.burst(t, 5, &next)
		r.waited(t)
		sets, beats := r.l.bundleSets()
		if len(sets) != 0 || len(beats) != 1 || beats[0].Subsystem != 1 {
			t.Fatalf("turn %d: a bundle of %d record sets and heartbeats %+v, want ss2's heartbeat alone", i, len(sets), beats)
		}
		if beats[0].Horizon <= horizon {
			t.Errorf("turn %d: ss2's horizon %d after %d", i, beats[0].Horizon, horizon)
		}
		horizon = beats[0].Horizon
	}
	r.mover.mu.Lock()
	r.mover.burstAt = 0
	r.mover.mu.Unlock()
	r.mover.Cut()
	r.l.updatesOf(15)
}

// TestRunEndsWhileABurstWaits: the end of Run's context ends the wait at
// once, however long the record sets may still wait.
func TestRunEndsWhileABurstWaits(t *testing.T) {
	r := startBurstRig(t, options{burstWait: time.Hour})
	next := 0
	r.burst(t, 5, &next)
	r.waited(t)
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
	case <-time.After(deadline):
		t.Fatal("Run did not return after its context ended while a burst's record sets waited")
	}
}

// TestABurstGoesAsTheSidefileNearsItsPacing: record sets no longer wait
// once a sidefile holds deferFill of what it holds unpaced, however heavy
// the cuts and young the record sets.
func TestABurstGoesAsTheSidefileNearsItsPacing(t *testing.T) {
	// 8 MiB unpaced: the first 4 MiB wait, the next 4 fill it.
	r := startBurstRig(t, options{burstWait: time.Hour, sidefile: 16 << 20})
	next := 0
	r.burst(t, 4, &next)
	r.waited(t)
	r.burst(t, 4, &next)
	r.l.updatesOf(8)
}

// TestQuiesceSendsAWaitingBurst: a Quiesce wants everything at the
// secondary: a burst's record sets no longer wait.
func TestQuiesceSendsAWaitingBurst(t *testing.T) {
	r := startBurstRig(t, options{burstWait: time.Hour})
	next := 0
	r.burst(t, 5, &next)
	r.waited(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.mover.Quiesce(ctx) }()
	r.l.updatesOf(5)
	cancel()
	<-done
}

// TestTheBurstWaitIsBoundedWhateverTheWallClockDoes: BurstWait is
// measured on the monotonic clock. The wall clock here moves a few
// milliseconds while the monotonic one moves BurstWait, as when the wall
// clock steps back by nearly BurstWait: the record sets go, where on the
// wall clock they would wait for the step as well. ReadTime, on the wire,
// stays a wall-clock time.
func TestTheBurstWaitIsBoundedWhateverTheWallClockDoes(t *testing.T) {
	var mono atomic.Int64
	mono.Store(int64(time.Hour))
	r := startBurstRig(t, options{burstWait: time.Hour, elapsed: func() time.Duration { return time.Duration(mono.Load()) }})
	before := time.Now()
	next := 0
	r.burst(t, 5, &next)
	r.waited(t)
	mono.Add(int64(time.Hour))
	// Another burst, so that the writes go on: only the bound ends the wait.
	r.burst(t, 5, &next)
	var got int
	for got < 10 {
		sets, _ := r.l.bundleSets()
		for _, rs := range sets {
			if rs.Subsystem != "ss1" {
				continue
			}
			if read := time.Unix(0, rs.ReadTime); read.Before(before) || read.After(time.Now()) {
				t.Errorf("record set %d read at %v, not a wall-clock time of this test", rs.Seq, read)
			}
			got += len(rs.Updates)
		}
	}
}
