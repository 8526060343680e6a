package pair

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"duplex/mover"
	"duplex/recordset"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/transport"
	"duplex/volume"
)

// shipMover is a mover over real subsystems whose secondary acknowledges
// what ship hands it, moving the consistency time to the subsystems' stamp.
type shipMover struct {
	noneAbandoned
	subs  []*subsystem.Subsystem
	mu    sync.Mutex
	acked int64
}

func (m *shipMover) Stats() mover.Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return mover.Stats{Connected: true, Acked: transport.Position{Time: m.acked}}
}

func (m *shipMover) Drop(mark func(recordset.Update)) {
	for _, ss := range m.subs {
		ups, _, _ := ss.Drain()
		var cost int64
		for _, u := range ups {
			mark(u)
			cost += sidefile.Cost(len(u.Data))
		}
		ss.Sidefile().Release(cost)
	}
}

// ship journals everything captured and returns it.
func (m *shipMover) ship() []recordset.Update {
	m.mu.Lock()
	defer m.mu.Unlock()
	var all []recordset.Update
	for _, ss := range m.subs {
		ups, _, _ := ss.Drain()
		var cost int64
		for _, u := range ups {
			cost += sidefile.Cost(len(u.Data))
			m.acked = max(m.acked, u.Timestamp)
		}
		ss.Sidefile().Release(cost)
		all = append(all, ups...)
	}
	return all
}

func markers(ups []recordset.Update, vol string) []recordset.PairState {
	var out []recordset.PairState
	for _, u := range ups {
		if u.Kind == recordset.KindMarker && u.Volume == vol {
			if m, err := recordset.DecodeMarker(u); err == nil {
				out = append(out, m.State)
			}
		}
	}
	return out
}

// TestSuspendAfterFirstCopyEndCapturedResumesAsResync: a pair suspended by
// hand once every update of its first copy, and the copy's end, are
// captured, but before the secondary acknowledged them, has its end in the
// stream ahead of the suspension: the secondary holds a full copy once it
// journals them. Its resume is a resync over that copy, not a first copy
// again (which would report the volume not consistent during the copy
// although the secondary held a full one).
func TestSuspendAfterFirstCopyEndCapturedResumesAsResync(t *testing.T) {
	mg, mv := firstCopyEndCaptured(t)
	if err := mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	sent := mv.ship() // the secondary journals the whole copy, its end, the suspension
	if got := markers(sent, "a"); len(got) != 3 || got[0] != recordset.StateFirstCopy || got[1] != recordset.StateCopyEnd || got[2] != recordset.StateSuspended {
		t.Fatalf("markers sent %v, want first copy, copy end, suspended", got)
	}
	mg.promote()
	if err := mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	got := markers(mv.ship(), "a")
	if len(got) == 0 {
		t.Fatal("the resume announced nothing")
	}
	if got[0] != recordset.StateResync {
		t.Fatalf("the resume announced %v, want a resync: the secondary journaled the first copy's end, and a first copy again reports the volume not consistent while the secondary holds a full copy", got[0])
	}
	if p := mg.Pairs()[0]; p.FirstCopy {
		t.Errorf("pair %+v still says its first copy never completed", p)
	}
}

// The same before the secondary acknowledged anything, resumed at once:
// the end is in the stream ahead of the resume, so it is a resync too.
func TestResumeRightAfterFirstCopyEndCapturedIsAResync(t *testing.T) {
	mg, mv := firstCopyEndCaptured(t)
	if err := mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	if err := mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	got := markers(mv.ship(), "a")
	if want := []recordset.PairState{recordset.StateFirstCopy, recordset.StateCopyEnd, recordset.StateSuspended, recordset.StateResync}; len(got) < 4 || !slices.Equal(got[:4], want) {
		t.Fatalf("markers sent %v, want %v first", got, want)
	}
}

// But if the end is dropped with everything held (the link stayed down),
// the secondary never completes the first copy: the pair announces its
// first copy again.
func TestFirstCopyEndDroppedAnnouncesFirstCopyAgain(t *testing.T) {
	mg, mv := firstCopyEndCaptured(t)
	if err := mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	mg.suspendSession(reasonLinkDown, true)
	after := markers(mv.ship(), "a")
	if len(after) == 0 || after[0] != recordset.StateFirstCopy {
		t.Fatalf("after the drop the secondary is told %v, want the first copy again", after)
	}
	if err := mg.Resume("a"); err != nil {
		t.Fatal(err)
	}
	if got := markers(mv.ship(), "a"); len(got) == 0 || got[0] != recordset.StateFirstCopy {
		t.Fatalf("the resume after the drop announced %v, want a first copy: the secondary never got the copy's end", got)
	}
}

// firstCopyEndCaptured returns a manager whose only pair, a, has its first
// copy's end captured and nothing acknowledged.
func firstCopyEndCaptured(t *testing.T) (*Manager, *shipMover) {
	dir := t.TempDir()
	const size = 4 << 20
	v, err := volume.Open(filepath.Join(dir, "a.img"), size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	ss := subsystem.New("s1", timer.New(), sidefile.New(64<<20), map[string]*volume.Volume{"a": v}, []string{"a"})
	mv := &shipMover{subs: []*subsystem.Subsystem{ss}}
	mg, err := Open(Options{Dir: filepath.Join(dir, "pairs")}, mv, []Volume{{Name: "a", Subsystem: ss, Size: size}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for mg.Pairs()[0].CopyEnd == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("first copy's end not captured after 10s: %+v", mg.Pairs()[0])
		}
		mg.copyOne(context.Background())
	}
	return mg, mv
}
