package pair

import (
	"context"
	"encoding/binary"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"

	"duplex/mover"
	"duplex/recordset"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/transport"
	"duplex/volume"
)

// idleMover is a connected mover that ships nothing: what the subsystems
// captured stays in their sidefiles for the test to read. The secondary's
// acknowledged time is what the test sets.
type idleMover struct {
	noneAbandoned
	acked atomic.Int64
}

func (m *idleMover) Stats() mover.Stats {
	return mover.Stats{Connected: true, Acked: transport.Position{Time: m.acked.Load()}}
}
func (*idleMover) Drop(func(recordset.Update)) {}

// TestSuspendAllKeepsDependentWritesAndOneTime: pair suspend --all while a
// dependent-write client writes to volume a (one subsystem), then, once that
// is acknowledged, to volume b (another subsystem). Suspending one pair after
// the other shipped a write to b whose earlier write to a was not shipped
// (subsystem.TestSuspendOneByOneBreaksDependentWrites shows it); SuspendAll
// suspends both at one point of the common timer, and the pairs suspended
// together report one consistency time.
func TestSuspendAllKeepsDependentWritesAndOneTime(t *testing.T) {
	const size = 1 << 20
	for round := range 20 {
		dir := t.TempDir()
		tm := timer.New()
		mk := func(id, vol string) *subsystem.Subsystem {
			v, err := volume.Open(filepath.Join(dir, vol+".img"), size)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { v.Close() })
			return subsystem.New(id, tm, sidefile.New(256<<20), map[string]*volume.Volume{vol: v}, []string{vol})
		}
		ss1, ss2 := mk("ss1", "a"), mk("ss2", "b")
		mv := &idleMover{}
		mg, err := Open(Options{Dir: filepath.Join(dir, "state"), Logger: slog.New(slog.DiscardHandler)}, mv,
			[]Volume{{Name: "a", Subsystem: ss1, Size: size}, {Name: "b", Subsystem: ss2, Size: size}})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		// Both first copies end and are acknowledged: a pair in its first
		// copy has no consistency time to share.
		for i := 0; slices.ContainsFunc(mg.Pairs(), func(p Pair) bool { return p.CopyEnd == 0 }); i++ {
			if i == 1000 {
				t.Fatalf("round %d: setup: first copies not ended after %d batches: %+v", round, i, mg.Pairs())
			}
			mg.copyOne(ctx)
		}
		mv.acked.Store(ss1.Stamp())
		mg.promote()
		for _, p := range mg.Pairs() {
			if p.State != Duplex {
				t.Fatalf("round %d: setup: pair %+v not duplex after its copy was acknowledged", round, p)
			}
		}
		ss1.Drain()
		ss2.Drain()
		var n atomic.Uint64
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 512)
			for i := uint64(1); i <= 2000; i++ {
				binary.BigEndian.PutUint64(buf, i)
				off := int64(i%256) * 512
				if err := ss1.Write(ctx, "a", buf, off); err != nil {
					t.Error(err)
					return
				}
				if err := ss2.Write(ctx, "b", buf, off); err != nil {
					t.Error(err)
					return
				}
				n.Store(i)
			}
		}()
		for n.Load() < 200 {
			runtime.Gosched()
		}
		names, err := mg.SuspendAll()
		<-done
		if err != nil || len(names) != 2 {
			t.Fatalf("SuspendAll: %v %v, want both pairs suspended", names, err)
		}
		shipped := func(s *subsystem.Subsystem) map[uint64]bool {
			us, _, _ := s.Drain()
			out := map[uint64]bool{}
			for _, u := range us {
				if u.Kind == recordset.KindWrite {
					out[binary.BigEndian.Uint64(u.Data)] = true
				}
			}
			return out
		}
		a, b := shipped(ss1), shipped(ss2)
		for i := range b {
			if !a[i] {
				t.Fatalf("round %d: write %d to b is shipped, the write %d to a acknowledged before it is not", round, i, i)
			}
		}
		ps := mg.Pairs()
		if ps[0].State != Suspended || ps[1].State != Suspended || ps[0].Consistent == 0 || ps[0].Consistent != ps[1].Consistent {
			t.Fatalf("round %d: pairs suspended together: %s at %d, %s at %d; want both suspended at one time",
				round, ps[0].State, ps[0].Consistent, ps[1].State, ps[1].Consistent)
		}
	}
}
