package secondary

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/apply"
	"duplex/consistency"
	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
	"duplex/volume"
)

// gatedFlush is a volume whose Flush (a checkpoint's fsync) waits until the
// gate opens, as an fsync does on a busy disk.
type gatedFlush struct {
	apply.Target
	started chan struct{} // receives once per Flush that begins
	gate    chan struct{} // closed: every Flush returns
}

func (t gatedFlush) Flush() error {
	select {
	case t.started <- struct{}{}:
	default:
	}
	<-t.gate
	return t.Target.Flush()
}

// lagRig is a secondary of one subsystem and one volume, linked to a test
// primary over the in-memory link.
type lagRig struct {
	sec  *Secondary
	conn transport.Conn
}

func newLagRig(t *testing.T, cfg Config, wrap func(apply.Target) apply.Target) *lagRig {
	t.Helper()
	return newLagRigAcks(t, cfg, wrap, nil)
}

// newLagRigAcks is newLagRig that hands the acknowledgements the secondary
// sends to acks, if not nil, and closes it when the link ends.
func newLagRigAcks(t *testing.T, cfg Config, wrap func(apply.Target) apply.Target, acks chan<- transport.Position) *lagRig {
	t.Helper()
	dir := t.TempDir()
	v, err := volume.Open(filepath.Join(dir, "vol1.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Session, cfg.Subsystems = "s", []string{"ss1"}
	cfg.Volumes = map[string]*volume.Volume{"vol1": v}
	cfg.JournalDir, cfg.StatePath = filepath.Join(dir, "journal"), filepath.Join(dir, "state.json")
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	sec, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		sec.targets["vol1"] = wrap(sec.targets["vol1"])
	}
	net := transport.NewMemNetwork(1, transport.Faults{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sec.Run(ctx, net) }()
	t.Cleanup(func() { cancel(); wg.Wait(); sec.Close(); v.Close() })
	conn, err := net.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Send(transport.EncodeHello(transport.Hello{Session: "s", Subsystems: []string{"ss1"}, Instance: 7,
		Volumes: []transport.VolumeInfo{{Name: "vol1", Size: 1 << 20}}})); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Recv(); err != nil { // the welcome
		t.Fatal(err)
	}
	go func() {
		for {
			f, err := conn.Recv()
			if err != nil {
				if acks != nil {
					close(acks)
				}
				return
			}
			if acks == nil {
				continue
			}
			if typ, body, err := transport.Open(f); err == nil && typ == transport.TypeAck {
				if p, err := transport.DecodePosition(body); err == nil {
					acks <- p
				}
			}
		}
	}()
	return &lagRig{sec: sec, conn: conn}
}

// send sends record set seq of ss1, whose horizon is seq ms; with a write
// of 4 KiB unless empty.
func (r *lagRig) send(t *testing.T, seq uint64, empty bool) {
	t.Helper()
	ts := int64(seq) * int64(time.Millisecond)
	rs := &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: seq, Group: seq, ReadTime: ts, Horizon: ts}
	if !empty {
		rs.Updates = []recordset.Update{{Volume: "vol1", Kind: recordset.KindWrite, Offset: (seq % 64) * 4096, Length: 4096,
			Timestamp: ts - 1, Seq: seq, Data: make([]byte, 4096)}}
	}
	f, err := recordset.Encode([]byte{transport.TypeRecordSet}, rs)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.conn.Send(transport.Seal(f)); err != nil {
		t.Fatal(err)
	}
}

// waitStats polls the secondary's Stats until ok holds, or fails with what
// the last one said, or with Stats not answering: it waits for the lock
// the receiver holds while it journals and hands groups to the applier.
func (r *lagRig) waitStats(t *testing.T, within time.Duration, ok func(Stats) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		res := make(chan Stats, 1)
		go func() { res <- r.sec.Stats() }()
		var st Stats
		select {
		case st = <-res:
		case <-time.After(max(time.Until(deadline), 0) + time.Second):
			t.Fatalf("%s within %s: Stats did not answer (the receiver holds the secondary's lock)", what, within)
		}
		if ok(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s within %s: applied group %d (time %d), journaled group %d", what, within, st.Group, st.Time, st.JournaledGroup)
		}
		time.Sleep(time.Millisecond)
	}
}

// A checkpoint's fsync of the volumes can take hundreds of milliseconds on
// a busy disk. Applying must go on meanwhile: the consistency time is the
// applied group's, and an applier waiting for the fsync held it back (and,
// its queue full, the receiver and the acknowledgements).
func TestApplyingGoesOnDuringACheckpoint(t *testing.T) {
	started, gate := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	defer open()
	r := newLagRig(t, Config{CheckpointEvery: time.Millisecond}, func(tg apply.Target) apply.Target {
		return gatedFlush{Target: tg, started: started, gate: gate}
	})
	r.send(t, 1, false)
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("no checkpoint began within 30s of a group applied with CheckpointEvery 1ms")
	}
	const last = 20
	for seq := uint64(2); seq <= last; seq++ {
		r.send(t, seq, false)
	}
	r.waitStats(t, 10*time.Second, func(st Stats) bool { return st.Group >= last },
		"groups journaled while a checkpoint's flush waited were not applied")
	open()
	r.waitStats(t, 10*time.Second, func(st Stats) bool { return st.Group >= last }, "applied")
}

// An idle primary sends record sets without updates every interval; the
// secondary journals an empty group only once a Checkpoint. Its consistency
// time follows only the journaled ones: the empty groups in between are in
// memory only, and a time taken from them would be lost by a kill -9, the
// same group then reported with an earlier time after the restart.
func TestIdleConsistencyTimeIsOnlyWhatIsJournaled(t *testing.T) {
	r := newLagRig(t, Config{Checkpoint: time.Hour}, nil)
	r.send(t, 1, false)
	r.waitStats(t, 10*time.Second, func(st Stats) bool { return st.Group >= 1 }, "group 1 applied")
	for seq := uint64(2); seq <= 5; seq++ {
		r.send(t, seq, true)
	}
	// A group with updates after them: once it is applied the empty
	// groups before it were formed too.
	r.send(t, 6, false)
	r.waitStats(t, 10*time.Second, func(st Stats) bool { return st.Group == 2 && st.Time == int64(6*time.Millisecond) }, "group 2 applied")
	for seq := uint64(7); seq <= 9; seq++ {
		r.send(t, seq, true)
	}
	time.Sleep(100 * time.Millisecond)
	if st := r.sec.Stats(); st.Group != 2 || st.JournaledGroup != 2 || st.Time != int64(6*time.Millisecond) {
		t.Fatalf("applied group %d as of %d, journaled %d: want group 2 as of 6ms, the empty groups since neither journaled nor reported", st.Group, st.Time, st.JournaledGroup)
	}
}

// The empty group journaled once a Checkpoint moves the idle consistency
// time on once it is applied, never back, and not before: a status read
// while the applier is slow to take it reports the last group applied.
func TestIdleConsistencyTimeMovesWithTheJournaledEmptyGroup(t *testing.T) {
	blocked, release := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	defer open()
	const checkpoint = 3 * time.Second
	r := newLagRig(t, Config{Checkpoint: checkpoint, OnApplied: func(g *consistency.Group) {
		if len(g.Updates) == 0 {
			select {
			case blocked <- struct{}{}:
			default:
			}
			<-release
		}
	}}, nil)
	r.send(t, 1, false)
	r.waitStats(t, 10*time.Second, func(st Stats) bool { return st.Group >= 1 }, "group 1 applied")
	applied := r.sec.Stats().Time
	r.send(t, 2, true)
	r.send(t, 3, true)
	time.Sleep(checkpoint)
	r.send(t, 4, true) // journaled: a Checkpoint has passed
	select {
	case <-blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("the empty group was not journaled and applied a Checkpoint after the last one")
	}
	if st := r.sec.Stats(); st.Time != applied {
		t.Fatalf("while the empty group %d is applied the consistency time is %d, want %d, the last applied group's (%d)", st.JournaledGroup, st.Time, applied, st.Group)
	}
	r.send(t, 5, true)
	open()
	r.waitStats(t, 10*time.Second, func(st Stats) bool { return st.Group == 2 && st.Time == int64(4*time.Millisecond) }, "the journaled empty group 2 applied")
}

// syncCounter is a file system that counts the fsyncs of the files in
// directories named dir.
type syncCounter struct {
	disk.FS
	dir   string
	syncs *atomic.Int64
}

type syncedFile struct {
	disk.File
	syncs *atomic.Int64
}

func (f syncedFile) Sync() error {
	f.syncs.Add(1)
	return f.File.Sync()
}

func (c syncCounter) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil || filepath.Base(filepath.Dir(name)) != c.dir {
		return f, err
	}
	return syncedFile{File: f, syncs: c.syncs}, nil
}

// The frames that arrive while the receiver waits (on the journal's fsync,
// which takes hundreds of milliseconds on a busy disk, or, here, on the
// applier) are read meanwhile, and their groups are then journaled with
// one fsync. One fsync each, in turn, kept the consistency time behind for
// the sum of their fsyncs after every slow one.
func TestFramesThatArriveWhileAGroupIsJournaledShareAnFsync(t *testing.T) {
	blocked, release := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	defer open()
	var syncs atomic.Int64
	r := newLagRig(t, Config{OnApplied: func(g *consistency.Group) {
		if g.Number == 1 {
			blocked <- struct{}{}
			<-release
		}
	}, FS: syncCounter{FS: disk.OS, dir: "journal", syncs: &syncs}}, nil)
	r.send(t, 1, false)
	select {
	case <-blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("group 1 not applied within 30s")
	}
	// Group 2 waits in the applier's queue, and the receiver waits to hand
	// group 3 over.
	r.send(t, 2, false)
	r.waitStats(t, 10*time.Second, func(st Stats) bool { return st.JournaledGroup == 2 }, "group 2 journaled")
	r.send(t, 3, false)
	r.waitStats(t, 10*time.Second, func(st Stats) bool { return st.JournaledGroup == 3 }, "group 3 journaled")
	before := syncs.Load()
	const last = 13
	for seq := uint64(4); seq <= last; seq++ {
		r.send(t, seq, false)
	}
	// Time for the frames to be read off the link while the receiver
	// waits; a reader slower than that still takes some of them together.
	time.Sleep(200 * time.Millisecond)
	open()
	r.waitStats(t, 10*time.Second, func(st Stats) bool { return st.Group == last }, "every group applied")
	if n := syncs.Load() - before; n >= last-3 {
		t.Fatalf("the %d groups of the record sets that arrived while the receiver waited were journaled with %d fsyncs: want fewer", last-3, n)
	}
}
