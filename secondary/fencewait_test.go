package secondary

import (
	"sync"
	"testing"
	"time"

	"duplex/apply"
	"duplex/recordset"
	"duplex/transport"
)

// gatedTarget writes only once its gate opens: a volume as slow as a test
// needs.
type gatedTarget struct {
	apply.Target
	gate <-chan struct{}
}

func (t gatedTarget) WriteAt(p []byte, off int64) error {
	<-t.gate
	return t.Target.WriteAt(p, off)
}

// journaledNotApplied gates the rig's volume a, links a primary, and has
// group 1, a write to a, journaled and acknowledged: applying it waits at
// the gate until open is called (or the test ends).
func (r *rig) journaledNotApplied(t *testing.T) (open func()) {
	t.Helper()
	gate := make(chan struct{})
	var once sync.Once
	open = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open)
	r.sec.targets["a"] = gatedTarget{Target: r.sec.targets["a"], gate: gate}

	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("answer to a matching hello: frame type %d, want a welcome", typ)
	}
	conn = conn.(settledConn).Conn // the applier waits at the gate
	sendRecordSet(t, conn, writeSet(1, 1000, recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4096}))
	if reason, acked := answers(t, conn, 0); acked != 1 {
		t.Fatalf("acknowledged through group %d, want 1 (refusal %q)", acked, reason)
	}
	return open
}

// fenceUnderWay starts a fence while a journaled group waits for the
// volumes (journaledNotApplied), and returns once the fence has
// disconnected the primary; the fence's error comes on done.
func (r *rig) fenceUnderWay(t *testing.T) (done <-chan error) {
	t.Helper()
	fenceDone := make(chan error, 1)
	go func() {
		_, err := r.sec.Fence()
		fenceDone <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); r.sec.Stats().Connected; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the fence did not disconnect the primary")
		}
	}
	return fenceDone
}

// TestFenceWaitsForApplyWithoutHoldingStatus: a fence waits until every
// journaled group is applied, however long the volumes take, and meanwhile
// the primary is already disconnected and status answers, showing how far
// applying has got, so that recover can say what it waits for.
func TestFenceWaitsForApplyWithoutHoldingStatus(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 1 << 20})
	open := r.journaledNotApplied(t)

	type fenced struct {
		pos transport.Position
		err error
	}
	fenceDone := make(chan fenced, 1)
	go func() {
		pos, err := r.sec.Fence()
		fenceDone <- fenced{pos, err}
	}()
	for {
		stats := make(chan Stats, 1)
		go func() { stats <- r.sec.Stats() }()
		var st Stats
		select {
		case st = <-stats:
		case f := <-fenceDone:
			t.Fatalf("the fence returned (%+v, %v) with group 1 journaled and not applied", f.pos, f.err)
		case <-time.After(10 * time.Second):
			t.Fatal("status waits while a fence waits for the volumes")
		}
		if !st.Connected {
			if st.Group != 0 || st.JournaledGroup != 1 {
				t.Errorf("while the fence waits: applied group %d of %d journaled, want 0 of 1", st.Group, st.JournaledGroup)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	open()
	select {
	case f := <-fenceDone:
		if f.err != nil || f.pos.Group != 1 {
			t.Fatalf("fence: %+v, %v; want it at group 1", f.pos, f.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the fence did not return once the volumes were written")
	}
	if st := r.sec.Stats(); st.Group != 1 {
		t.Errorf("after the fence: applied through group %d, want 1", st.Group)
	}
}
