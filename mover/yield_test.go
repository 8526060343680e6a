package mover

import (
	"testing"
	"time"

	"duplex/recordset"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/volume"
)

// Only a burst's sends yield, and only while the sidefile has room and
// what waits is young: a steady rate's sends, which are the lag, never wait
// on a CPU to spare.
func TestSendsYieldOnlyForABurstWithRoom(t *testing.T) {
	const limit = 64 << 20
	side := sidefile.New(limit)
	ss := subsystem.New("ss1", timer.New(), side, map[string]*volume.Volume{}, nil)
	m := New(Config{Session: session, Subsystems: []*subsystem.Subsystem{ss}})
	now := time.Now()
	set := func(cost int64, read time.Time) *held {
		return &held{rs: &recordset.RecordSet{ReadTime: read.UnixNano()}, cost: cost}
	}
	burst := []*held{set(yieldFrom/2, now), set(yieldFrom/2, now)}
	if m.shouldYield(burst, now) {
		t.Error("sends yield without a yielder")
	}
	m.yield = &yielder{}
	if !m.shouldYield(burst, now) {
		t.Error("a burst's sends do not yield with an empty sidefile")
	}
	if m.shouldYield([]*held{set(yieldFrom-1, now)}, now) {
		t.Error("sends lighter than yieldFrom yield")
	}
	if m.shouldYield([]*held{set(yieldFrom, now.Add(-yieldAge-time.Millisecond))}, now) {
		t.Error("sends of a record set read more than yieldAge ago yield")
	}
	side.Take(int64(yieldFill*float64(side.Unpaced())) + 1)
	if m.shouldYield(burst, now) {
		t.Errorf("sends yield with the sidefile at %d of the %d bytes it holds unpaced", side.Stats().Used, side.Unpaced())
	}
}
