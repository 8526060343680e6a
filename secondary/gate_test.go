package secondary

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
	"duplex/volume"
)

// testGate is a Gate whose limit the test sets.
type testGate struct {
	mu      sync.Mutex
	limit   int64
	changed chan struct{}
}

func newTestGate(limit int64) *testGate { return &testGate{limit: limit, changed: make(chan struct{})} }

func (g *testGate) Limit() (int64, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.limit, g.changed
}

func (g *testGate) set(limit int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.limit = limit
	close(g.changed)
	g.changed = make(chan struct{})
}

// gateRig is a secondary of one volume in dir, linked to a test primary.
type gateRig struct {
	sec    *Secondary
	vol    *volume.Volume
	net    *transport.MemNetwork
	conn   transport.Conn
	cancel func()
	wg     sync.WaitGroup
	// acked is the last group an Ack on conn acknowledged.
	acked atomic.Uint64
	// acks counts the Acks on conn, new or not.
	acks atomic.Int64
	// free is the JournalFree of the last Ack on conn.
	free atomic.Uint64
}

func openGateRig(t *testing.T, dir string, gate Gate) *gateRig {
	t.Helper()
	return openGateRigWith(t, dir, gate, HistoryConfig{})
}

// openGateRigWith is openGateRig keeping history as hist says.
func openGateRigWith(t *testing.T, dir string, gate Gate, hist HistoryConfig) *gateRig {
	t.Helper()
	return openGateRigConfig(t, dir, gate, func(c *Config) { c.History = hist })
}

// openGateRigConfig is openGateRig with the Config as edit leaves it.
func openGateRigConfig(t *testing.T, dir string, gate Gate, edit func(*Config)) *gateRig {
	t.Helper()
	v, err := volume.Open(filepath.Join(dir, "vol1.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Session: "s", Subsystems: []string{"ss1"}, Volumes: map[string]*volume.Volume{"vol1": v},
		JournalDir: filepath.Join(dir, "journal"), StatePath: filepath.Join(dir, "state.json"), Gate: gate,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if edit != nil {
		edit(&cfg)
	}
	sec, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &gateRig{sec: sec, vol: v, net: transport.NewMemNetwork(1, transport.Faults{})}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(1)
	go func() { defer r.wg.Done(); sec.Run(ctx, r.net) }()
	conn, welcome := r.link(t, ctx)
	if welcome.Group != 0 {
		r.acked.Store(welcome.Group)
	}
	r.countAcks(conn)
	return r
}

// countAcks makes conn the test primary's link, and counts the
// acknowledgements on it in r.acked.
func (r *gateRig) countAcks(conn transport.Conn) {
	go func() {
		for {
			f, err := conn.Recv()
			if err != nil {
				return
			}
			if typ, body, err := transport.Open(f); err == nil && typ == transport.TypeAck {
				r.acks.Add(1)
				if p, err := transport.DecodePosition(body); err == nil {
					r.free.Store(p.JournalFree)
					if p.Group > r.acked.Load() {
						r.acked.Store(p.Group)
					}
				}
			}
		}
	}()
	r.conn = conn
}

// link dials the secondary as the test primary (instance 7) and returns
// the connection and the Welcome, which it waits up to 30s for.
func (r *gateRig) link(t *testing.T, ctx context.Context) (transport.Conn, transport.Position) {
	t.Helper()
	conn, err := r.net.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Send(transport.EncodeHello(transport.Hello{Session: "s", Subsystems: []string{"ss1"}, Instance: 7,
		Volumes: []transport.VolumeInfo{{Name: "vol1", Size: 1 << 20}}})); err != nil {
		t.Fatal(err)
	}
	typ, body, err := recvFrame(conn, 30*time.Second)
	if err != nil {
		t.Fatalf("waiting for the Welcome: %v", err)
	}
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a Welcome", typ)
	}
	w, err := transport.DecodePosition(body)
	if err != nil {
		t.Fatal(err)
	}
	return conn, w
}

func (r *gateRig) close(t *testing.T) {
	t.Helper()
	r.cancel()
	r.wg.Wait()
	if err := r.sec.Close(); err != nil {
		t.Fatal(err)
	}
	r.vol.Close()
}

// send sends record set seq with horizon seq ms and two writes of byte
// seq, at seq ms - 2 and seq ms - 1, to blocks 2*seq and 2*seq+1.
func (r *gateRig) send(t *testing.T, seq uint64) {
	t.Helper()
	ts := int64(seq) * int64(time.Millisecond)
	rs := &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: seq, Group: seq, ReadTime: ts, Horizon: ts}
	for i := range uint64(2) {
		rs.Updates = append(rs.Updates, recordset.Update{Volume: "vol1", Kind: recordset.KindWrite, Offset: (2*seq + i) * 4096, Length: 4096,
			Timestamp: ts - 2 + int64(i), Seq: 2*seq + i, Data: bytes.Repeat([]byte{byte(seq)}, 4096)})
	}
	f, err := recordset.Encode([]byte{transport.TypeRecordSet}, rs)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.conn.Send(transport.Seal(f)); err != nil {
		t.Fatal(err)
	}
}

// blocks returns, for blocks 2..2*n+1, whether each holds its write.
func blocksHeld(t *testing.T, sec *Secondary, n uint64) []bool {
	t.Helper()
	var held []bool
	b := make([]byte, 4096)
	for blk := uint64(2); blk <= 2*n+1; blk++ {
		if err := sec.ReadAt("vol1", b, int64(blk*4096)); err != nil {
			t.Fatal(err)
		}
		held = append(held, b[0] == byte(blk/2))
	}
	return held
}

func waitGate(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 30s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitApplied waits until the secondary has applied group g.
func (r *gateRig) waitApplied(t *testing.T, g uint64) {
	t.Helper()
	waitGate(t, fmt.Sprintf("group %d applied", g), func() bool { return r.sec.Stats().Group == g })
}

// want says which writes a volume holds: those stamped at or before the
// limit, of record sets 1..n (the writes of set s at s ms - 2 and - 1).
func want(n uint64, limit int64) []bool {
	var w []bool
	for blk := uint64(2); blk <= 2*n+1; blk++ {
		seq, i := blk/2, blk%2
		w = append(w, int64(seq)*int64(time.Millisecond)-2+int64(i) <= limit)
	}
	return w
}

// A coupled secondary applies no update stamped after the Gate's limit,
// journals beyond it, and applies the updates of a group straddling the
// limit through it: the volumes are an image as of exactly the limit. A
// restart replays the journal through the limit and no further.
func TestGateHoldsApplyingAtTheLimit(t *testing.T) {
	dir := t.TempDir()
	gate := newTestGate(0)
	r := openGateRig(t, dir, gate)
	r.send(t, 1)
	r.send(t, 2)
	waitGate(t, "groups 1 and 2 journaled", func() bool { return r.sec.Stats().JournaledGroup >= 2 })
	if st := r.sec.Stats(); st.Group != 0 || st.CoupledTime != int64(2*time.Millisecond) || st.GatedGroups != 2 {
		t.Fatalf("limit 0: applied group %d, coupled time %d, gated %d; want 0 applied, 2ms journaled, 2 gated", st.Group, st.CoupledTime, st.GatedGroups)
	}
	if got := blocksHeld(t, r.sec, 2); !slices.Equal(got, want(2, 0)) {
		t.Fatalf("limit 0: volume holds %v", got)
	}

	// Through group 1 and the first write of group 2.
	limit := int64(2*time.Millisecond) - 2
	gate.set(limit)
	waitGate(t, "group 1 applied and group 2 through the limit", func() bool { st := r.sec.Stats(); return st.Group == 1 && st.Time == limit })
	if got := blocksHeld(t, r.sec, 2); !slices.Equal(got, want(2, limit)) {
		t.Fatalf("limit %d: volume holds %v, want %v", limit, got, want(2, limit))
	}

	// A restart (the state file names group 1 at most) replays through the
	// limit, not past it, while group 2 stays journaled.
	r.close(t)
	r = openGateRig(t, dir, gate)
	if got := blocksHeld(t, r.sec, 2); !slices.Equal(got, want(2, limit)) {
		t.Fatalf("restarted at limit %d: volume holds %v, want %v", limit, got, want(2, limit))
	}
	r.send(t, 3)
	waitGate(t, "group 3 journaled", func() bool { return r.sec.Stats().JournaledGroup >= 3 })
	gate.set(int64(3 * time.Millisecond))
	waitGate(t, "every group applied", func() bool { return r.sec.Stats().Group == 3 })
	if got := blocksHeld(t, r.sec, 3); !slices.Equal(got, want(3, int64(3*time.Millisecond))) {
		t.Fatalf("limit 3ms: volume holds %v", got)
	}
	r.close(t)
}

// The groups a restart finds past the limit are applied once the limit
// reaches them, though no primary sends anything more.
func TestGatedGroupsAppliedAfterARestartWithoutAPrimary(t *testing.T) {
	dir := t.TempDir()
	gate := newTestGate(0)
	r := openGateRig(t, dir, gate)
	r.send(t, 1)
	r.send(t, 2)
	waitGate(t, "groups journaled", func() bool { return r.sec.Stats().JournaledGroup >= 2 })
	r.close(t)
	r = openGateRig(t, dir, gate)
	defer r.close(t)
	if st := r.sec.Stats(); st.Group != 0 {
		t.Fatalf("restart at limit 0 applied group %d", st.Group)
	}
	gate.set(int64(2 * time.Millisecond))
	waitGate(t, "groups applied", func() bool { return r.sec.Stats().Group == 2 })
	if got := blocksHeld(t, r.sec, 2); !slices.Equal(got, want(2, int64(2*time.Millisecond))) {
		t.Fatalf("volume holds %v", got)
	}
}

// A shutdown while the Gate holds the applier, groups journaled ahead of
// it and a receiver waiting for journal room, ends: Run returns and Close
// too, the groups left to the journal. Run waited for the receiver for
// ever.
func TestShutdownWhileTheGateHolds(t *testing.T) {
	dir := t.TempDir()
	r := openGateRigConfig(t, dir, newTestGate(0), func(c *Config) {
		c.JournalFree = func() (uint64, error) { return 0, nil }
	})
	for seq := uint64(1); seq <= 4; seq++ {
		r.send(t, seq)
	}
	waitGate(t, "a receiver waiting for journal room", func() bool { return !r.sec.Stats().JournalFullSince.IsZero() })
	done := make(chan struct{})
	go func() { r.close(t); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run and Close did not return within 30s of the shutdown while the Gate held the applier")
	}
	r = openGateRig(t, dir, newTestGate(int64(4*time.Millisecond)))
	defer r.close(t)
	waitGate(t, "the journaled groups applied after the restart", func() bool { return r.sec.Stats().Group >= 1 })
}

// A coupled secondary waiting for journal room still answers its primary
// now and then: the primary gives a link up after its silence time with
// nothing from the secondary, and one waiting for room is reachable and
// behind, not cut off. Redialled every silence time, the link would be
// dropped and welcomed again for as long as the room takes to come. The
// primary still gives it up once nothing new was acknowledged for its
// HeldSend (a minute by default), so that the session sees it down and
// suspends the pairs after suspend_after: the application never waits for
// ever on a full sidefile (TestReceiptsWaitingForRoomSayNoRoom).
func TestAReceiverWaitingForRoomStillAnswers(t *testing.T) {
	dir := t.TempDir()
	r := openGateRigConfig(t, dir, newTestGate(0), func(c *Config) {
		c.JournalFree = func() (uint64, error) { return 0, nil }
	})
	defer r.close(t)
	for seq := uint64(1); seq <= 4; seq++ {
		r.send(t, seq)
	}
	waitGate(t, "a receiver waiting for journal room", func() bool { return !r.sec.Stats().JournalFullSince.IsZero() })
	// Past the last receipt the groups before the wait brought.
	time.Sleep(100 * time.Millisecond)
	before := r.acks.Load()
	time.Sleep(3 * roomAnswer)
	if r.sec.Stats().JournalFullSince.IsZero() {
		t.Fatal("the receiver stopped waiting for room: the test proves nothing")
	}
	if got := r.acks.Load() - before; got < 2 {
		t.Fatalf("%d acknowledgements in %s of waiting for room, want at least 2 (one every %s)", got, 3*roomAnswer, roomAnswer)
	}
}

// The receipts of a coupled secondary waiting for journal room say there
// is none (JournalFree 1, as the primary reads it: no room at all), though
// its file system holds more than the journal's reserve: short of room for
// the largest group besides, it takes nothing more. The primary, which
// gives the link up once nothing new is acknowledged for its HeldSend,
// says so then, and not that the secondary's disk may hang. Before, they
// said the bytes above the reserve.
func TestReceiptsWaitingForRoomSayNoRoom(t *testing.T) {
	dir := t.TempDir()
	free := &atomic.Uint64{}
	free.Store(1 << 40)
	r := openGateRigConfig(t, dir, newTestGate(0), func(c *Config) {
		c.JournalFree = func() (uint64, error) { return free.Load(), nil }
	})
	defer r.close(t)
	above := uint64(4096)
	free.Store(uint64(r.sec.holdReserve()) + above)
	for seq := uint64(1); seq <= 4; seq++ {
		r.send(t, seq)
	}
	waitGate(t, "a receiver waiting for journal room", func() bool { return !r.sec.Stats().JournalFullSince.IsZero() })
	before := r.acks.Load()
	waitGate(t, "two receipts while waiting for room", func() bool { return r.acks.Load() >= before+2 })
	if r.sec.Stats().JournalFullSince.IsZero() {
		t.Fatal("the receiver stopped waiting for room: the test proves nothing")
	}
	if got := r.free.Load(); got != 1 {
		t.Fatalf("a receipt while waiting for journal room says %d bytes free in the journal, want 1 (none)", got)
	}
}
