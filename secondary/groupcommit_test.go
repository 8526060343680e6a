package secondary

import (
	"bytes"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/consistency"
	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// batchRig is a rig whose applier waits in group 1 until released, so that
// the record sets sent meanwhile pile up on the link and reach the receiver
// together, as a batch journaled with one fsync (commitPending).
type batchRig struct {
	*rig
	in       *disk.Injector
	conn     transport.Conn
	blocked  chan struct{}
	release  func()
	released chan struct{}
	// also, if set, is called after each group is applied (tests stall
	// the applier in later groups with it).
	also atomic.Pointer[func(*consistency.Group)]
}

func newBatchRig(t *testing.T, more ...func(*Config)) *batchRig {
	t.Helper()
	b := &batchRig{rig: &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"a": 1 << 20}, subs: []string{"ss1"}},
		in: disk.NewInjector(nil), blocked: make(chan struct{}, 1), released: make(chan struct{})}
	var once sync.Once
	b.release = func() { once.Do(func() { close(b.released) }) }
	t.Cleanup(b.release)
	var first sync.Once
	b.edit = func(c *Config) {
		c.FS = b.in
		c.CheckpointEvery = time.Hour
		c.OnApplied = func(g *consistency.Group) {
			if g.Number == 1 {
				first.Do(func() {
					b.blocked <- struct{}{}
					<-b.released
				})
			}
			if f := b.also.Load(); f != nil {
				(*f)(g)
			}
		}
		for _, f := range more {
			f(c)
		}
	}
	b.open()
	t.Cleanup(b.close)
	conn, typ, _ := b.dial(b.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	// The applier waits in group 1: acknowledgements must not wait for it.
	b.conn = conn.(settledConn).Conn
	b.send(1)
	select {
	case <-b.blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("group 1 not applied within 30s")
	}
	return b
}

// send sends the record set that makes group seq on its own: a write of
// byte seq to block seq of volume a.
func (b *batchRig) send(seq uint64) {
	b.t.Helper()
	ts := int64(seq) * int64(time.Millisecond)
	sendRecordSet(b.t, b.conn, subsystemSet("ss1", seq, ts, ts, recordset.Update{Volume: "a", Kind: recordset.KindWrite,
		Offset: seq * 4096, Length: 4096, Data: bytes.Repeat([]byte{byte(seq)}, 4096)}))
}

// journaled waits until group n is journaled.
func (b *batchRig) journaled(n uint64) {
	b.t.Helper()
	waitFor(b.t, "group journaled", func() bool { return b.sec.Stats().JournaledGroup >= n })
}

// stallApplier journals groups 2 and 3: group 2 waits in the applier's
// queue, and the receiver waits to hand group 3 over, so the frames sent
// from then on wait on the link (or in the reader) until release.
func (b *batchRig) stallApplier() {
	b.t.Helper()
	b.send(2)
	b.journaled(2)
	b.send(3)
	b.journaled(3)
}

// readAhead sends the groups after 3 through last and gives the reader time
// to take them off the link (a moment no test can observe).
func (b *batchRig) readAhead(last uint64) {
	b.t.Helper()
	for seq := uint64(4); seq <= last; seq++ {
		b.send(seq)
	}
	time.Sleep(500 * time.Millisecond)
}

// holds says whether volume a holds exactly the groups through n: byte seq
// in block seq for each seq <= n, zeros after (through last).
func (b *batchRig) holds(n, last uint64) {
	b.t.Helper()
	got := make([]byte, 4096)
	for seq := uint64(1); seq <= last; seq++ {
		if err := b.sec.ReadAt("a", got, int64(seq)*4096); err != nil {
			b.t.Fatal(err)
		}
		want := byte(0)
		if seq <= n {
			want = byte(seq)
		}
		if !bytes.Equal(got, bytes.Repeat([]byte{want}, 4096)) {
			b.t.Fatalf("block %d holds %#x, want %#x: not at group %d", seq, got[0], want, n)
		}
	}
}

// A journal write that fails in the middle of a batch: the groups of the
// batch before it are appended but not synced, and none of the batch is
// acknowledged or applied; the secondary stops. A restart replays what of
// the batch the journal holds whole, and is at a group boundary: the
// groups through the one it names, none after.
func TestAJournalWriteFailingInABatchAcknowledgesAndAppliesNoneOfIt(t *testing.T) {
	b := newBatchRig(t)
	b.stallApplier()
	// The batch's first record is written, its second fails.
	b.in.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(b.dir, "journal"), Skip: 1, Once: true})
	const last = 8
	b.readAhead(last)
	b.release()
	reason, acked := answers(t, b.conn, last)
	if acked != 3 {
		t.Fatalf("acknowledged through group %d, want 3: the batch's records were never synced (refusal %q)", acked, reason)
	}
	if reason == "" {
		t.Fatal("no refusal after the journal write failed")
	}
	if b.in.Injected(disk.OpWrite) == 0 {
		t.Fatal("the journal write failure was never injected")
	}
	waitFor(t, "the groups before the batch applied", func() bool { return b.sec.Stats().Group == 3 })
	time.Sleep(50 * time.Millisecond)
	if st := b.sec.Stats(); st.Group != 3 || st.JournaledGroup != 3 || st.Stopped == "" {
		t.Fatalf("applied %d, journaled %d, stopped %q: want 3, 3, and stopped", st.Group, st.JournaledGroup, st.Stopped)
	}
	b.holds(3, last)

	b.stop()
	b.in.Clear()
	b.open()
	n := b.sec.Position().Group
	if n < 3 || n > 4 {
		t.Fatalf("restarted at group %d, want 3 or 4 (the batch's one record written whole)", n)
	}
	b.holds(n, last)
}

// A fence while the reader holds frames read ahead, and a batch waits to be
// journaled: nothing of the frames after the fence is acknowledged,
// journaled or applied, and the reader lets go of the link.
func TestAFenceWhileFramesAreReadAheadTakesNoneOfThem(t *testing.T) {
	b := newBatchRig(t)
	b.stallApplier()
	const last = 8
	b.readAhead(last)
	fenced := make(chan error, 1)
	go func() {
		_, err := b.sec.Fence()
		fenced <- err
	}()
	waitFor(t, "the fence disconnected the primary", func() bool { return !b.sec.Stats().Connected })
	b.release()
	select {
	case err := <-fenced:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the fence did not return within 30s")
	}
	pos := b.sec.Position()
	if pos.Group != 3 {
		t.Fatalf("fenced at group %d, want 3: the frames read ahead were taken after the fence", pos.Group)
	}
	reason, acked := answers(t, b.conn, last)
	if acked > 3 {
		t.Fatalf("acknowledged through group %d after the fence at 3 (refusal %q)", acked, reason)
	}
	b.holds(3, last)
	if _, err := b.conn.Recv(); err == nil {
		t.Fatal("the link still carries frames after the fence")
	}
	b.stop()
	b.open()
	if n := b.sec.Position().Group; n != 3 {
		t.Fatalf("the fenced secondary restarted at group %d, want 3", n)
	}
	b.holds(3, last)
}

// A link cut while frames are read ahead: what arrived before the cut is
// received (journaled, acknowledged as far as the link lets it, applied),
// nothing waits for the reader, and the same primary process linking again
// is welcomed at the group journaled last.
func TestALinkCutWhileFramesAreReadAheadReceivesWhatArrived(t *testing.T) {
	b := newBatchRig(t)
	b.stallApplier()
	const last = 8
	b.readAhead(last)
	b.conn.Close()
	b.release()
	waitFor(t, "the groups read before the cut journaled", func() bool { return b.sec.Stats().JournaledGroup == last })
	waitFor(t, "the link let go", func() bool { return !b.sec.Stats().Connected })
	waitFor(t, "every journaled group applied", func() bool { return b.sec.Stats().Group == last })
	b.holds(last, last)

	_, typ, body := b.dial(b.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	w, err := transport.DecodePosition(body)
	if err != nil {
		t.Fatal(err)
	}
	if w.Group != last {
		t.Fatalf("welcomed at group %d, want %d", w.Group, last)
	}
}

// A shutdown while frames are read ahead and the receiver waits to hand a
// group over returns once the applier goes on, and a restart is at a group
// boundary.
func TestAShutdownWhileFramesAreReadAheadIsNotStuck(t *testing.T) {
	b := newBatchRig(t)
	b.stallApplier()
	const last = 8
	b.readAhead(last)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		b.stop()
	}()
	time.Sleep(100 * time.Millisecond)
	b.release()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the shutdown did not return within 30s")
	}
	b.open()
	n := b.sec.Position().Group
	if n < 3 || n > last {
		t.Fatalf("restarted at group %d, want 3 to %d", n, last)
	}
	b.holds(n, last)
}

// The groups of a batch are all durable once its fsync returns: each is
// acknowledged then, before any is handed to the applier, so that an
// applier behind (its queue full) holds back no acknowledgement of them,
// and the primary's sidefile is freed as soon as the journal holds them.
func TestABatchIsAcknowledgedBeforeTheApplierTakesIt(t *testing.T) {
	b := newBatchRig(t)
	blocked2, released2 := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	let2 := func() { once.Do(func() { close(released2) }) }
	t.Cleanup(let2)
	stall := func(g *consistency.Group) {
		if g.Number == 2 {
			blocked2 <- struct{}{}
			<-released2
		}
	}
	b.also.Store(&stall)
	b.stallApplier()
	const last = 8
	b.readAhead(last)
	// The applier goes on to group 2 and waits there: the receiver hands
	// group 3 over, and journals the frames read ahead as one batch,
	// group 3 filling the applier's queue.
	b.release()
	select {
	case <-blocked2:
	case <-time.After(30 * time.Second):
		t.Fatal("group 2 not applied within 30s")
	}
	reason, acked := answers(t, b.conn, last-1)
	if reason != "" || acked != last {
		t.Fatalf("acknowledged through group %d (refusal %q) with groups through %d journaled and the applier in group 2: want %d", acked, reason, last, last)
	}
	let2()
	waitFor(t, "every group applied", func() bool { return b.sec.Stats().Group == last })
	b.holds(last, last)
}
