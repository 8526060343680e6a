package mover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/transport"
	"duplex/volume"
)

const (
	session  = "sess"
	volSize  = 1 << 20
	deadline = 20 * time.Second
)

func volName(ss string) string { return "vol-" + ss }

// primary is a primary site with one volume per subsystem and a mover over
// an in-memory link; the test plays the secondary on net.
type primary struct {
	timer *timer.Timer
	subs  map[string]*subsystem.Subsystem
	net   *transport.MemNetwork
	mover *Mover
	// cancel ends Run, which then sends its result on done.
	cancel context.CancelFunc
	done   chan error
}

type options struct {
	subsystems []string
	interval   time.Duration // default: an hour, so that only the test cuts
	retransmit time.Duration
	silence    time.Duration // Config.Silence
	heldSend   time.Duration // Config.HeldSend
	coupled    bool          // Config.Coupled
	window     int64
	sidefile   int64
	limits     recordset.Limits // what the secondary accepts
	hook       func(point string)
	compressor *transport.Compressor
	// noIndexedAcks: a primary from before indexed acknowledgements.
	noIndexedAcks bool
	burstWait     time.Duration                              // Config.BurstWait
	copyReadWait  time.Duration                              // Config.CopyReadWait
	dialer        transport.Dialer                           // default: the test's in-memory network
	wait          func(ctx context.Context, d time.Duration) // the pause between two dials
	elapsed       func() time.Duration                       // the monotonic clock
	copyReadTimer func(time.Duration) <-chan time.Time       // times a cut's wait for copies' reads
	log           io.Writer                                  // the mover's log (text); default: discarded
	timer         *timer.Timer                               // default: timer.New(), no lease
}

func startPrimary(t *testing.T, o options) *primary {
	t.Helper()
	if len(o.subsystems) == 0 {
		o.subsystems = []string{"ss1", "ss2"}
	}
	if o.interval == 0 {
		o.interval = time.Hour
	}
	if o.sidefile == 0 {
		o.sidefile = 16 << 20
	}
	dir := t.TempDir()
	if o.timer == nil {
		o.timer = timer.New()
	}
	p := &primary{timer: o.timer, subs: map[string]*subsystem.Subsystem{}, net: transport.NewMemNetwork(1, transport.Faults{})}
	var list []*subsystem.Subsystem
	for _, id := range o.subsystems {
		v, err := volume.Open(filepath.Join(dir, id+".img"), volSize)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		ss := subsystem.New(id, p.timer, sidefile.New(o.sidefile), map[string]*volume.Volume{volName(id): v}, []string{volName(id)})
		p.subs[id] = ss
		list = append(list, ss)
	}
	if o.log == nil {
		o.log = io.Discard
	}
	var dialer transport.Dialer = p.net
	if o.dialer != nil {
		dialer = o.dialer
	}
	p.mover = New(Config{
		Session: session, Subsystems: list, Timer: p.timer, Interval: o.interval, Dialer: dialer,
		Retransmit: o.retransmit, Silence: o.silence, HeldSend: o.heldSend, Coupled: o.coupled, Window: o.window, HandshakeTimeout: deadline, Limits: o.limits,
		Compressor: o.compressor, NoIndexedAcks: o.noIndexedAcks, BurstWait: o.burstWait, CopyReadWait: o.copyReadWait, Logger: slog.New(slog.NewTextHandler(o.log, nil)),
	})
	p.mover.hook = o.hook
	if o.wait != nil {
		p.mover.wait = o.wait
	}
	if o.elapsed != nil {
		p.mover.elapsed = o.elapsed
	}
	if o.copyReadTimer != nil {
		p.mover.copyReadTimer = o.copyReadTimer
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	p.cancel, p.done = cancel, done
	go func() { done <- p.mover.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(deadline):
			t.Errorf("Run did not return after its context was cancelled")
		}
	})
	return p
}

func (p *primary) write(t *testing.T, ss string, data []byte, off int64) {
	t.Helper()
	if err := p.subs[ss].Write(context.Background(), volName(ss), data, off); err != nil {
		t.Fatal(err)
	}
}

func (p *primary) used(ss string) int64 { return p.subs[ss].Sidefile().Stats().Used }

// link is the secondary's end of one connection.
type link struct {
	t      *testing.T
	conn   transport.Conn
	frames chan []byte
	closed chan error
}

// accept takes the mover's next connection and reads its Hello.
func (p *primary) accept(t *testing.T) (*link, transport.Hello) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	conn, err := p.net.Accept(ctx)
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	l := &link{t: t, conn: conn, frames: make(chan []byte, 1024), closed: make(chan error, 1)}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); conn.Close() })
	go func() {
		for {
			f, err := conn.Recv()
			if err != nil {
				l.closed <- err
				close(l.frames)
				return
			}
			select {
			case l.frames <- f:
			case <-stop:
				return
			}
		}
	}()
	typ, body := l.next()
	if typ != transport.TypeHello {
		t.Fatalf("first frame has type %d, want Hello", typ)
	}
	h, err := transport.DecodeHello(body)
	if err != nil {
		t.Fatalf("DecodeHello: %v", err)
	}
	return l, h
}

func (l *link) next() (byte, []byte) {
	l.t.Helper()
	select {
	case f, ok := <-l.frames:
		if !ok {
			l.t.Fatalf("connection closed while waiting for a frame: %v", <-l.closed)
		}
		typ, body, err := transport.Open(f)
		if err != nil {
			l.t.Fatalf("Open: %v", err)
		}
		return typ, body
	case <-time.After(deadline):
		l.t.Fatal("no frame from the mover")
		return 0, nil
	}
}

func (l *link) recordSet() *recordset.RecordSet {
	l.t.Helper()
	typ, body := l.next()
	if typ != transport.TypeRecordSet {
		l.t.Fatalf("frame of type %d, want a record set", typ)
	}
	rs, err := recordset.Decode(body, recordset.DefaultLimits)
	if err != nil {
		l.t.Fatalf("record set: %v", err)
	}
	if rs.Session != session {
		l.t.Fatalf("record set of session %q", rs.Session)
	}
	return rs
}

// recordSets receives n record sets, keyed by subsystem.
func (l *link) recordSets(n int) map[string]*recordset.RecordSet {
	l.t.Helper()
	out := map[string]*recordset.RecordSet{}
	for range n {
		rs := l.recordSet()
		if prev, dup := out[rs.Subsystem]; dup {
			l.t.Fatalf("two record sets of %s (%d and %d) where one was expected", rs.Subsystem, prev.Seq, rs.Seq)
		}
		out[rs.Subsystem] = rs
	}
	return out
}

func (l *link) send(typ byte, p transport.Position) {
	l.t.Helper()
	if err := l.conn.Send(transport.EncodePosition(typ, p)); err != nil {
		l.t.Fatalf("send: %v", err)
	}
}

func (l *link) welcome(p transport.Position) { l.send(transport.TypeWelcome, p) }
func (l *link) ack(p transport.Position)     { l.send(transport.TypeAck, p) }

// awaitClosed waits for the mover to close the connection.
func (l *link) awaitClosed() {
	l.t.Helper()
	for {
		select {
		case _, ok := <-l.frames:
			if !ok {
				return
			}
		case <-time.After(deadline):
			l.t.Fatal("mover did not close the connection")
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestHello(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"b", "a", "c"}})
	_, h := p.accept(t)
	if h.Session != session {
		t.Errorf("Hello session %q, want %q", h.Session, session)
	}
	if got, want := h.Subsystems, []string{"b", "a", "c"}; !slices.Equal(got, want) {
		t.Errorf("Hello subsystems %v, want %v", got, want)
	}
	if h.Instance == 0 {
		t.Error("Hello instance 0: the secondary could not tell a reconnect from a restart")
	}
}

// Record sets are numbered per subsystem from the secondary's Through+1, and
// every cut yields one record set per subsystem: an idle subsystem's is empty
// but carries an advancing horizon.
func TestRecordSetsPerIntervalNumberedFromWelcome(t *testing.T) {
	p := startPrimary(t, options{})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Group: 3, Time: 1, Through: map[string]uint64{"ss1": 5, "ss2": 9}})

	var lastHorizon = map[string]int64{}
	var lastGroup uint64
	for i := range 6 {
		var data []byte
		if i%2 == 0 {
			data = fmt.Appendf(nil, "interval %d", i)
			p.write(t, "ss1", data, int64(i)*4096)
		}
		p.mover.Cut()
		sets := l.recordSets(2)
		for ss, base := range map[string]uint64{"ss1": 5, "ss2": 9} {
			rs := sets[ss]
			if rs == nil {
				t.Fatalf("interval %d: no record set of %s", i, ss)
			}
			if got, want := rs.Seq, base+1+uint64(i); got != want {
				t.Fatalf("interval %d: %s record set %d, want %d", i, ss, got, want)
			}
			if rs.Horizon <= lastHorizon[ss] {
				t.Fatalf("interval %d: %s horizon %d did not advance past %d", i, ss, rs.Horizon, lastHorizon[ss])
			}
			lastHorizon[ss] = rs.Horizon
		}
		if sets["ss1"].Group != sets["ss2"].Group || sets["ss1"].Group <= lastGroup {
			t.Fatalf("interval %d: groups %d and %d, previous %d", i, sets["ss1"].Group, sets["ss2"].Group, lastGroup)
		}
		lastGroup = sets["ss1"].Group
		if n := len(sets["ss2"].Updates); n != 0 {
			t.Fatalf("interval %d: idle ss2 sent %d updates", i, n)
		}
		us := sets["ss1"].Updates
		if data == nil {
			if len(us) != 0 {
				t.Fatalf("interval %d: %d updates, want none", i, len(us))
			}
			continue
		}
		if len(us) != 1 || !bytes.Equal(us[0].Data, data) || us[0].Offset != uint64(i)*4096 || us[0].Volume != volName("ss1") {
			t.Fatalf("interval %d: updates %+v, want the write %q", i, us, data)
		}
		if us[0].Timestamp > sets["ss1"].Horizon {
			t.Fatalf("update stamped %d after its set's horizon %d", us[0].Timestamp, sets["ss1"].Horizon)
		}
	}
}

// A restarted primary's new writes must sort after everything the secondary
// already holds, even when its clock is behind.
func TestWelcomeTimeRaisesTimer(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	l, _ := p.accept(t)
	future := time.Now().Add(time.Hour).UnixNano()
	l.welcome(transport.Position{Group: 10, Time: future, Through: map[string]uint64{"ss1": 4}})
	waitFor(t, "the welcome to be taken", func() bool { return p.timer.Last() >= future })
	p.write(t, "ss1", []byte("x"), 0)
	p.mover.Cut()
	rs := l.recordSet()
	if len(rs.Updates) != 1 || rs.Updates[0].Timestamp <= future || rs.Horizon <= future {
		t.Fatalf("after a welcome at %d: update %v, horizon %d", future, rs.Updates, rs.Horizon)
	}
}

// Sidefile bytes stay reserved until the secondary says the record set that
// carried them is journaled (Through), not merely received.
func TestSidefileReleasedOnlyOnAck(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	data := bytes.Repeat([]byte{7}, 1000)
	p.write(t, "ss1", data, 0)
	p.write(t, "ss1", data, 4096)
	want := 2 * sidefile.Cost(len(data))
	if got := p.used("ss1"); got != want {
		t.Fatalf("Used = %d after two writes, want %d", got, want)
	}
	p.mover.Cut()
	rs := l.recordSet()
	if len(rs.Updates) != 2 {
		t.Fatalf("%d updates", len(rs.Updates))
	}
	if got := p.used("ss1"); got != want {
		t.Fatalf("Used = %d once sent, want %d: bytes released before the secondary journaled them", got, want)
	}
	// Received but not journaled.
	l.ack(transport.Position{Time: 1, Received: map[string]uint64{"ss1": rs.Seq}})
	waitFor(t, "the receipt to be taken", func() bool { return p.mover.Stats().Acked.Time == 1 })
	if got := p.used("ss1"); got != want {
		t.Fatalf("Used = %d after a receipt, want %d: bytes released before the secondary journaled them", got, want)
	}
	if got := p.mover.Stats().HeldSets; got != 1 {
		t.Fatalf("HeldSets = %d, want 1", got)
	}
	// Journaled.
	l.ack(transport.Position{Group: 1, Time: 2, Through: map[string]uint64{"ss1": rs.Seq}, Received: map[string]uint64{"ss1": rs.Seq}})
	waitFor(t, "the sidefile to be released", func() bool { return p.used("ss1") == 0 })
	st := p.mover.Stats()
	if st.HeldSets != 0 || st.HeldBytes != 0 {
		t.Fatalf("Stats %+v after the ack, want nothing held", st)
	}
	if st.Acked.Group != 1 {
		t.Fatalf("Acked group %d, want 1", st.Acked.Group)
	}
	// A stale ack releases nothing twice.
	l.ack(transport.Position{Group: 1, Time: 2, Through: map[string]uint64{"ss1": rs.Seq}})
	p.write(t, "ss1", data, 0)
	p.mover.Cut()
	l.recordSet()
	if got := p.used("ss1"); got != sidefile.Cost(len(data)) {
		t.Fatalf("Used = %d, want %d", got, sidefile.Cost(len(data)))
	}
}

// After the link drops, every record set the secondary has not received is
// sent again, in order, on the next connection, and nothing it already holds.
func TestResendAfterReconnect(t *testing.T) {
	p := startPrimary(t, options{})
	l, h1 := p.accept(t)
	l.welcome(transport.Position{})
	var sent []map[string]*recordset.RecordSet
	for i := range 4 {
		p.write(t, "ss1", []byte{byte(i + 1)}, int64(i))
		p.mover.Cut()
		sent = append(sent, l.recordSets(2))
	}
	// The secondary journaled set 1 of both and received set 2 of ss1, then
	// the link dropped on the secondary's side.
	l.ack(transport.Position{Group: 1, Time: sent[0]["ss1"].Horizon, Through: map[string]uint64{"ss1": 1, "ss2": 1}, Received: map[string]uint64{"ss1": 2, "ss2": 1}})
	waitFor(t, "the ack", func() bool { return p.mover.Stats().Acked.Group == 1 })
	l.conn.Close()

	l2, h2 := p.accept(t)
	if h2.Instance != h1.Instance {
		t.Fatalf("instance changed across a reconnect: %d then %d", h1.Instance, h2.Instance)
	}
	l2.welcome(transport.Position{Group: 1, Time: sent[0]["ss1"].Horizon, Through: map[string]uint64{"ss1": 1, "ss2": 1}, Received: map[string]uint64{"ss1": 2, "ss2": 1}})
	// Expect ss1 3, 4 and ss2 2, 3, 4, each subsystem in order.
	got := map[string][]uint64{}
	for range 5 {
		rs := l2.recordSet()
		got[rs.Subsystem] = append(got[rs.Subsystem], rs.Seq)
		// The resent set is the one sent before.
		orig := sent[rs.Seq-1][rs.Subsystem]
		a, _ := recordset.Encode(nil, orig)
		b, _ := recordset.Encode(nil, rs)
		if !bytes.Equal(a, b) {
			t.Fatalf("resent %s/%d differs from the original", rs.Subsystem, rs.Seq)
		}
	}
	if want := []uint64{3, 4}; !slices.Equal(got["ss1"], want) {
		t.Errorf("ss1 resent %v, want %v", got["ss1"], want)
	}
	if want := []uint64{2, 3, 4}; !slices.Equal(got["ss2"], want) {
		t.Errorf("ss2 resent %v, want %v", got["ss2"], want)
	}
	if c := p.mover.Stats().Connects; c != 2 {
		t.Errorf("Connects = %d, want 2", c)
	}
	// New sets continue the numbering.
	p.mover.Cut()
	sets := l2.recordSets(2)
	if sets["ss1"].Seq != 5 || sets["ss2"].Seq != 5 {
		t.Fatalf("after resending: %d and %d, want 5 and 5", sets["ss1"].Seq, sets["ss2"].Seq)
	}
	l2.ack(transport.Position{Group: 2, Time: sets["ss1"].Horizon, Through: map[string]uint64{"ss1": 5, "ss2": 5}, Received: map[string]uint64{"ss1": 5, "ss2": 5}})
	waitFor(t, "everything released", func() bool { return p.used("ss1") == 0 && p.mover.Stats().HeldSets == 0 })
}

// A secondary that restarted lost what it had received but not journaled;
// its Welcome says so, and the mover sends that again too.
func TestResendAfterSecondaryLostReceived(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	for i := range 3 {
		p.write(t, "ss1", []byte{byte(i)}, 0)
		p.mover.Cut()
		l.recordSet()
	}
	l.ack(transport.Position{Time: 1, Received: map[string]uint64{"ss1": 3}})
	waitFor(t, "the receipt", func() bool { return p.mover.Stats().Acked.Time == 1 })
	l.conn.Close()
	l2, _ := p.accept(t)
	l2.welcome(transport.Position{}) // a fresh secondary process
	for want := uint64(1); want <= 3; want++ {
		if rs := l2.recordSet(); rs.Seq != want {
			t.Fatalf("resent %d, want %d", rs.Seq, want)
		}
	}
}

// The mover refuses to go on with a secondary that no longer holds what it
// acknowledged as journaled: releasing it was only safe because it was
// durable.
func TestSecondaryThatLostJournaledData(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	p.write(t, "ss1", []byte("x"), 0)
	p.mover.Cut()
	rs := l.recordSet()
	l.ack(transport.Position{Group: 1, Time: rs.Horizon, Through: map[string]uint64{"ss1": rs.Seq}, Received: map[string]uint64{"ss1": rs.Seq}})
	waitFor(t, "the release", func() bool { return p.used("ss1") == 0 })
	l.conn.Close()
	l2, _ := p.accept(t)
	l2.welcome(transport.Position{}) // through 0 < 1
	p.mover.Cut()
	l2.awaitClosed()
}

func TestQuiesce(t *testing.T) {
	p := startPrimary(t, options{})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	for i := range 10 {
		p.write(t, []string{"ss1", "ss2"}[i%2], bytes.Repeat([]byte{byte(i)}, 100), int64(i)*512)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.mover.Quiesce(ctx) }()
	// Quiesce cuts: the updates arrive. They are not acknowledged yet.
	last := map[string]uint64{}
	withData := 0
	for withData < 2 {
		rs := l.recordSet()
		last[rs.Subsystem] = max(last[rs.Subsystem], rs.Seq)
		if len(rs.Updates) > 0 {
			withData++
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Quiesce returned %v before anything was acknowledged", err)
	default:
	}
	// Acknowledge everything received so far, then keep acknowledging.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		through := last
		for {
			l.conn.Send(transport.EncodePosition(transport.TypeAck, transport.Position{Group: 1, Time: 1, Through: through, Received: through}))
			select {
			case f, ok := <-l.frames:
				if !ok {
					return
				}
				typ, body, err := transport.Open(f)
				if err != nil || typ != transport.TypeRecordSet {
					continue
				}
				rs, err := recordset.Decode(body, recordset.DefaultLimits)
				if err != nil {
					continue
				}
				through = map[string]uint64{"ss1": through["ss1"], "ss2": through["ss2"]}
				through[rs.Subsystem] = max(through[rs.Subsystem], rs.Seq)
			case <-stop:
				return
			}
		}
	}()
	if err := <-done; err != nil {
		t.Fatalf("Quiesce: %v", err)
	}
	for ss := range p.subs {
		if got := p.used(ss); got != 0 {
			t.Errorf("%s: Used = %d after Quiesce, want 0", ss, got)
		}
		if got := p.subs[ss].Sidefile().Stats().Captured; got != 0 {
			t.Errorf("%s: %d updates still captured after Quiesce", ss, got)
		}
	}
}

func TestQuiesceHonoursContext(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	p.write(t, "ss1", []byte("never acknowledged"), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.mover.Quiesce(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Quiesce without acks: %v, want DeadlineExceeded", err)
	}
}

// Quiesce with nothing written returns once the time-only sets are out, even
// if they are never acknowledged.
func TestQuiesceIdle(t *testing.T) {
	p := startPrimary(t, options{})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := p.mover.Quiesce(ctx); err != nil {
		t.Fatalf("Quiesce with nothing to replicate: %v", err)
	}
}

// The mover reconnects after the secondary closes the connection, and after
// a refusal.
func TestReconnects(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	l, _ := p.accept(t)
	l.conn.Close() // before the welcome
	l, _ = p.accept(t)
	if err := l.conn.Send(transport.EncodeRefuse(transport.Refusal{Reason: "not now"})); err != nil {
		t.Fatal(err)
	}
	l.awaitClosed()
	l, _ = p.accept(t)
	l.welcome(transport.Position{})
	p.mover.Cut()
	if rs := l.recordSet(); rs.Seq != 1 {
		t.Fatalf("first record set %d, want 1", rs.Seq)
	}
	l.conn.Close() // after it
	l, _ = p.accept(t)
	l.welcome(transport.Position{Received: map[string]uint64{"ss1": 1}})
	p.mover.Cut()
	if rs := l.recordSet(); rs.Seq != 2 {
		t.Fatalf("record set %d after reconnecting, want 2", rs.Seq)
	}
	waitFor(t, "Connected", func() bool { return p.mover.Stats().Connected })
	if got := p.mover.Stats().Connects; got != 4 {
		t.Fatalf("Connects = %d, want 4", got)
	}
}

// Cuts while the link is down grow the waiting record set instead of
// queueing one per interval, and its numbering still follows the Welcome.
func TestCutsWhileDisconnectedCoalesce(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	for i := range 5 {
		p.write(t, "ss1", []byte{byte(i)}, int64(i))
		p.mover.Cut()
	}
	l, _ := p.accept(t)
	l.welcome(transport.Position{Group: 7, Through: map[string]uint64{"ss1": 40}})
	rs := l.recordSet()
	if rs.Seq != 41 || len(rs.Updates) != 5 {
		t.Fatalf("record set %d with %d updates, want 41 with 5", rs.Seq, len(rs.Updates))
	}
	for i, u := range rs.Updates {
		if u.Data[0] != byte(i) || (i > 0 && u.Timestamp <= rs.Updates[i-1].Timestamp) {
			t.Fatalf("update %d: %+v", i, u)
		}
	}
	p.mover.Cut()
	if rs := l.recordSet(); rs.Seq != 42 {
		t.Fatalf("next record set %d, want 42", rs.Seq)
	}
}

// No more than the window is in flight: a record set beyond it waits for the
// secondary's receipt (and meanwhile grows).
func TestWindow(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}, window: 1})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	p.write(t, "ss1", []byte("one"), 0)
	p.mover.Cut()
	if rs := l.recordSet(); rs.Seq != 1 {
		t.Fatalf("got %d", rs.Seq)
	}
	p.write(t, "ss1", []byte("two"), 0)
	p.mover.Cut()
	p.write(t, "ss1", []byte("three"), 0)
	p.mover.Cut()
	l.ack(transport.Position{Received: map[string]uint64{"ss1": 1}})
	rs := l.recordSet()
	if rs.Seq != 2 || len(rs.Updates) != 2 {
		t.Fatalf("after the receipt: set %d with %d updates, want set 2 holding both later writes (held back by the window)", rs.Seq, len(rs.Updates))
	}
}

// When the secondary reports a set held beyond a gap, the missing one is sent
// again without waiting for the retransmit time.
func TestFastResendOfGap(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}, interval: 5 * time.Millisecond, retransmit: time.Hour})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	seen := map[uint64]int{}
	for seen[3] == 0 {
		seen[l.recordSet().Seq]++
	}
	// Set 1 was "lost": the secondary holds 2 and 3 beyond the gap.
	l.ack(transport.Position{Received: map[string]uint64{"ss1": 0}, Ahead: map[string]uint64{"ss1": 3}})
	for {
		rs := l.recordSet()
		if rs.Seq == 1 {
			return
		}
	}
}

// When acknowledgements stall for the retransmit time, what was sent and
// not received is sent again.
func TestRetransmitOnStall(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}, interval: 5 * time.Millisecond, retransmit: 100 * time.Millisecond})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	p.write(t, "ss1", []byte("lost"), 0)
	first := l.recordSet().Seq
	for {
		if rs := l.recordSet(); rs.Seq == first {
			break
		}
	}
	if p.mover.Stats().Resends == 0 {
		t.Fatal("Resends = 0 after a retransmission")
	}
}

// recordSetWithin returns the next record set, or nil if none arrives
// within d.
func (l *link) recordSetWithin(d time.Duration) *recordset.RecordSet {
	l.t.Helper()
	select {
	case f, ok := <-l.frames:
		if !ok {
			return nil
		}
		typ, body, err := transport.Open(f)
		if err != nil || typ != transport.TypeRecordSet {
			l.t.Fatalf("frame of type %d (%v), want a record set", typ, err)
		}
		rs, err := recordset.Decode(body, recordset.DefaultLimits)
		if err != nil {
			l.t.Fatal(err)
		}
		return rs
	case <-time.After(d):
		return nil
	}
}

// Drop gives up what is held and restarts the numbering under a new
// instance. The secondary may have journaled more than the mover saw
// acknowledged (the ack was lost with the link): record sets formed after the
// Drop must still be numbered after what the secondary holds, or it takes
// them for duplicates and their updates are lost while the mover releases
// them as acknowledged.
func TestDropThenSecondaryAheadOfAcks(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	l, h1 := p.accept(t)
	l.welcome(transport.Position{})
	p.write(t, "ss1", []byte("before drop"), 0)
	p.mover.Cut()
	rs1 := l.recordSet()
	// The secondary journals rs1; its ack never reaches the primary.
	var marked []recordset.Update
	p.mover.Drop(func(u recordset.Update) { marked = append(marked, u) })
	if len(marked) != 1 || string(marked[0].Data) != "before drop" {
		t.Fatalf("Drop marked %v, want the one unacknowledged update", marked)
	}
	if got := p.used("ss1"); got != 0 {
		t.Fatalf("Used = %d after Drop, want 0", got)
	}
	l.awaitClosed()

	p.write(t, "ss1", []byte("after drop"), 4096)
	l2, h2 := p.accept(t)
	if h2.Instance == h1.Instance {
		t.Fatal("same instance after Drop: the secondary would keep what it received")
	}
	through := map[string]uint64{"ss1": rs1.Seq}
	l2.welcome(transport.Position{Group: 1, Time: rs1.Horizon, Through: through, Received: through})
	p.mover.Cut()
	var got *recordset.RecordSet
	for got == nil || len(got.Updates) == 0 {
		if got = l2.recordSetWithin(3 * time.Second); got == nil {
			t.Fatalf("the write after Drop never reached the secondary (sidefile Used now %d, mover %+v)", p.used("ss1"), p.mover.Stats())
		}
	}
	if got.Seq <= rs1.Seq {
		t.Fatalf("write after Drop sent as record set %d, which the secondary (through %d) discards as a duplicate", got.Seq, rs1.Seq)
	}
	if string(got.Updates[0].Data) != "after drop" {
		t.Fatalf("got %+v", got.Updates)
	}
}

// The secondary's journal free space is taken from every Welcome and Ack,
// even one that brings no new group: a secondary restarted once its disk was
// freed welcomes at the group it had, and the old figure, taken while its
// disk was full, would refuse every resync for ever.
func TestJournalFreeFromEveryPosition(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Group: 1, Time: 2, Through: map[string]uint64{"ss1": 0}, JournalFree: 1 << 20})
	waitFor(t, "the welcome's free space", func() bool { return p.mover.Stats().Acked.JournalFree == 1<<20 })
	l.conn.Close()
	l2, _ := p.accept(t)
	l2.welcome(transport.Position{Group: 1, Time: 2, Through: map[string]uint64{"ss1": 0}, JournalFree: 1 << 30})
	waitFor(t, "the restarted secondary's free space", func() bool { return p.mover.Stats().Acked.JournalFree == 1<<30 })
	l2.ack(transport.Position{Group: 1, Time: 2, Through: map[string]uint64{"ss1": 0}, JournalFree: 5 << 30})
	waitFor(t, "a receipt's free space", func() bool { return p.mover.Stats().Acked.JournalFree == 5<<30 })
}

// Quiesce forms record sets of what was captured, not a group per
// acknowledgement: with many subsystems, a group of record sets per receipt
// brings a receipt per record set, each of which cut another group, so a
// stop never caught up with its own idle record sets.
func TestQuiesceCutsOnlyWhatWasCaptured(t *testing.T) {
	var names []string
	for i := range 16 {
		names = append(names, fmt.Sprintf("ss%02d", i+1))
	}
	p := startPrimary(t, options{subsystems: names})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	p.write(t, "ss01", []byte("the last write"), 0)
	g0 := p.mover.Stats().Group
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.mover.Quiesce(ctx) }()

	// The secondary says what it received for every record set, and
	// journals everything only a while after the write's record set came.
	received := map[string]uint64{}
	var journalAt time.Time
	// The wait for the write's record set is the test's deadline: between
	// two frames a loaded machine may pause for longer than the tick.
	giveUp := time.Now().Add(deadline)
	for journalAt.IsZero() || time.Now().Before(journalAt) {
		select {
		case f, ok := <-l.frames:
			if !ok {
				t.Fatal("connection closed")
			}
			typ, body, err := transport.Open(f)
			if err != nil || typ != transport.TypeRecordSet {
				continue
			}
			rs, err := recordset.Decode(body, recordset.DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			received[rs.Subsystem] = max(received[rs.Subsystem], rs.Seq)
			l.ack(transport.Position{Received: maps.Clone(received)})
			if len(rs.Updates) > 0 && journalAt.IsZero() {
				journalAt = time.Now().Add(200 * time.Millisecond)
			}
		case <-time.After(250 * time.Millisecond):
			if journalAt.IsZero() && time.Now().After(giveUp) {
				t.Fatalf("the write's record set has not come %v after the Quiesce began", deadline)
			}
		}
	}
	l.ack(transport.Position{Group: 1, Time: 1, Through: maps.Clone(received), Received: maps.Clone(received)})
	if err := <-done; err != nil {
		t.Fatalf("Quiesce: %v", err)
	}
	if cut := p.mover.Stats().Group - g0; cut > 2 {
		t.Fatalf("Quiesce formed %d groups for one captured write: it cuts on every acknowledgement", cut)
	}
}
