package site

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/failover"
	"duplex/internal/testenv"
	"duplex/nbd"
)

// switchoverConfig is linkConfig with the secondary's control and NBD
// addresses and a control token, which a switchover needs.
func switchoverConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg := linkConfig(t)
	tok := filepath.Join(cfg.Dir, "token")
	if err := os.WriteFile(tok, []byte("switchover-test-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.ControlTokenFile = tok
	// Reserved, not port 0: a secondary stopped and started again binds them again.
	cfg.Secondary.Control, cfg.Secondary.NBD = testenv.FreeAddr(t), testenv.FreeAddr(t)
	return cfg
}

// runningSecondary is a secondary daemon as duplex secondary runs it: once
// a switchover promotes it in place, it serves the promoted site.
type runningSecondary struct {
	*Secondary
	promotedUp chan *Promoted // the promoted site, once serving
	done       chan struct{}
	err        error // what Run ended with
	stop       context.CancelFunc
}

func startSecondaryForSwitchover(t *testing.T, cfg *config.Config) *runningSecondary {
	t.Helper()
	return startSecondaryForSwitchoverWith(t, cfg, SecondaryOptions{})
}

// startSecondaryForSwitchoverWith is startSecondaryForSwitchover with opts.
func startSecondaryForSwitchoverWith(t *testing.T, cfg *config.Config, opts SecondaryOptions) *runningSecondary {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := OpenSecondary(cfg, quiet, opts)
	if err != nil {
		t.Fatal(err)
	}
	// The primary reaches both of its addresses as bound.
	cfg.Primary.Secondary, cfg.Secondary.Control = s.ListenAddr(), s.ControlAddr()
	rs := &runningSecondary{Secondary: s, done: make(chan struct{}), promotedUp: make(chan *Promoted, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	rs.stop = cancel
	go func() {
		defer close(rs.done)
		rs.err = s.Run(ctx)
		if !errors.Is(rs.err, ErrPromoted) {
			return
		}
		p, err := OpenPromoted(s.PromotedConfig(), quiet, PromotedOptions{CouplingStore: opts.CouplingStore, Listeners: s.HandOver()})
		if err != nil {
			rs.err = err
			return
		}
		rs.promotedUp <- p
		p.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-rs.done })
	return rs
}

// startPrimaryForSwitchover runs a primary of cfg; stop ends its Run and
// returns its error.
func startPrimaryForSwitchover(t *testing.T, cfg *config.Config) (p *Primary, stop func() error) {
	t.Helper()
	p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), PrimaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, time.Minute) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { stop() })
	return p, stop
}

func waitDuplex(t *testing.T, p *Primary) {
	t.Helper()
	waitFor(t, time.Minute, "the pairs to be duplex and linked", func() bool {
		st := p.Status()
		for _, v := range st.Volumes {
			if v.State != "duplex" {
				return false
			}
		}
		return st.Link == "connected"
	})
}

// ackedWrite is one write the primary acknowledged.
type ackedWrite struct {
	vol  string
	off  int64
	data []byte
}

// writer writes 4 KiB blocks round the volumes of a primary, one after the
// other (each once the one before was acknowledged), until a write fails or
// stop is closed.
type writer struct {
	n     atomic.Int64 // writes acknowledged so far
	acked []ackedWrite
	err   error
	done  chan struct{}
}

func startWriter(p *Primary, vols []string, stop <-chan struct{}) *writer {
	wr := &writer{done: make(chan struct{})}
	go func() {
		defer close(wr.done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			w := ackedWrite{vol: vols[i%len(vols)], off: int64(i/len(vols)%256) * 4096, data: bytes.Repeat([]byte{byte(i)}, 4096)}
			binary.BigEndian.PutUint64(w.data, uint64(i+1))
			if wr.err = p.Write(context.Background(), w.vol, w.data, w.off); wr.err != nil {
				return
			}
			wr.acked = append(wr.acked, w)
			wr.n.Add(1)
		}
	}()
	return wr
}

// waitAcked waits until n writes were acknowledged, however slowly a loaded
// machine writes them.
func (wr *writer) waitAcked(t *testing.T, n int64) {
	t.Helper()
	waitFor(t, time.Minute, fmt.Sprintf("%d writes acknowledged", n), func() bool { return wr.n.Load() >= n })
}

// wait waits for the writer to end, and returns the writes acknowledged and
// the error that ended them.
func (wr *writer) wait() ([]ackedWrite, error) {
	<-wr.done
	return wr.acked, wr.err
}

// holdsLastAcked fails unless prom holds, at each place written, the last
// write acknowledged there.
func holdsLastAcked(t *testing.T, prom *Promoted, acked []ackedWrite) {
	t.Helper()
	latest := map[[2]any][]byte{}
	for _, w := range acked {
		latest[[2]any{w.vol, w.off}] = w.data
	}
	for k, want := range latest {
		got := make([]byte, len(want))
		if err := prom.ReadAt(k[0].(string), got, k[1].(int64)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s at %d: the new primary lacks the last write acknowledged there (write %d, holds %d)", k[0], k[1],
				binary.BigEndian.Uint64(want), binary.BigEndian.Uint64(got))
		}
	}
}

// A switchover under a writer: the secondary, promoted in place, holds
// every write the primary acknowledged; the writes held in the pause are
// refused with ESHUTDOWN once it is done; the old primary records it,
// reports it, refuses a restart pointing at rejoin, and a rejoin plan
// there finds nothing to discard or copy.
func TestSwitchoverUnderAWriterLosesNothing(t *testing.T) {
	cfg := switchoverConfig(t)
	s := startSecondaryForSwitchover(t, cfg)
	p, stopPrimary := startPrimaryForSwitchover(t, cfg)
	waitDuplex(t, p)
	vols := cfg.VolumeNames()

	wr := startWriter(p, vols, nil)
	wr.waitAcked(t, 64)
	res, err := p.Switchover(context.Background(), time.Minute)
	if err != nil {
		t.Fatalf("switchover: %v", err)
	}
	acked, werr := wr.wait()
	var errno nbd.Errno
	if !errors.As(werr, &errno) || errno != nbd.ESHUTDOWN {
		t.Errorf("the writer's first refused write: %v, want ESHUTDOWN", werr)
	}
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged before the switchover")
	}
	t.Logf("%d writes acknowledged; pause %.3fs, drain %.3fs, group %d", len(acked), res.PauseSeconds, res.DrainSeconds, res.Group)
	if res.PromotedAt == "" || res.ConsistencyTime == "" || res.PauseSeconds <= 0 {
		t.Errorf("result %+v: want the promotion's time, the consistency time and the pause", res)
	}

	var prom *Promoted
	select {
	case prom = <-s.promotedUp:
	case <-s.done:
		t.Fatalf("the secondary's Run ended with %v, and no promoted site serves", s.err)
	}
	var pe *PromotedError
	if !errors.As(s.err, &pe) {
		t.Fatalf("the secondary's Run ended with %v, want a PromotedError", s.err)
	}
	if got := control.FormatTime(pe.Promotion.At); got != res.PromotedAt {
		t.Errorf("promoted at %s, the switchover says %s", got, res.PromotedAt)
	}
	holdsLastAcked(t, prom, acked)
	pst := prom.Status()
	if pst.PrimarySite != "secondary" || pst.PrimarySince != res.PromotedAt {
		t.Errorf("the new primary's status: primary_site %q since %q, want secondary since %s", pst.PrimarySite, pst.PrimarySince, res.PromotedAt)
	}
	ch, err := prom.ChangedRegions()
	if err != nil {
		t.Fatal(err)
	}

	st := p.Status()
	if st.Role != "switched-over" || st.SwitchedOverAt == "" || st.PrimarySite != "secondary" || st.PrimarySince != res.PromotedAt {
		t.Errorf("the old primary's status: role %q, switched_over_at %q, primary_site %q since %q", st.Role, st.SwitchedOverAt, st.PrimarySite, st.PrimarySince)
	}
	if err := p.Write(context.Background(), vols[0], make([]byte, 4096), 0); !errors.As(err, &errno) || errno != nbd.ESHUTDOWN {
		t.Errorf("a write after the switchover: %v, want ESHUTDOWN", err)
	}
	if _, err := p.Switchover(context.Background(), time.Minute); err == nil {
		t.Error("a second switchover went through")
	}
	rec, err := failover.ReadSwitchover(nil, PairStateDir(cfg))
	if err != nil || rec.State != failover.SwitchoverDone || rec.PromotedAt != res.PromotedAt {
		t.Errorf("switchover record %+v, %v", rec, err)
	}
	if err := stopPrimary(); err != nil {
		t.Errorf("the old primary's stop: %v", err)
	}
	if _, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), PrimaryOptions{}); err == nil ||
		!strings.Contains(err.Error(), "duplex rejoin") {
		t.Errorf("a restart of the old primary: %v, want a refusal pointing at duplex rejoin", err)
	}
	plan, err := PlanRejoin(cfg, ch)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range plan {
		if v.Here != 0 || v.Copy != 0 || v.Whole != "" {
			t.Errorf("a rejoin after the switchover: %s would discard %d bytes and copy %d (%s), want nothing", v.Name, v.Here, v.Copy, v.Whole)
		}
	}
}

// A switchover while the link is down is refused, changing nothing: the
// writes go on, and no record stops a restart.
func TestSwitchoverRefusedWhileTheLinkIsDown(t *testing.T) {
	cfg := switchoverConfig(t)
	cfg.Primary.Secondary, cfg.Secondary.Control = "127.0.0.1:1", "127.0.0.1:1"
	p, _ := startPrimaryForSwitchover(t, cfg)
	_, err := p.Switchover(context.Background(), time.Minute)
	if err == nil || !strings.Contains(err.Error(), "link to the secondary is down") || !strings.Contains(err.Error(), "nothing changed") {
		t.Fatalf("switchover with the link down: %v, want a refusal naming the link", err)
	}
	switchoverAbandoned(t, p, cfg)
	if st := p.Status(); st.Role != "primary" || st.SwitchedOverAt != "" {
		t.Errorf("after a refused switchover: role %q, switched_over_at %q", st.Role, st.SwitchedOverAt)
	}
}

// A running secondary asked to take over at a group it has not journaled
// refuses before it fences: the primary stays linked, and replication goes
// on.
func TestPromoteInPlaceRefusesAGroupItLacks(t *testing.T) {
	cfg := switchoverConfig(t)
	s := startSecondaryForSwitchover(t, cfg)
	p, _ := startPrimaryForSwitchover(t, cfg)
	waitDuplex(t, p)
	journaled := s.Replica().Stats().JournaledGroup
	for _, req := range []control.PromoteRequest{
		{Session: cfg.Session, Group: journaled + 1000},
		{Session: "payroll", Group: 1},
	} {
		if _, err := s.promoteInPlace(req); err == nil {
			t.Fatalf("promote in place %+v with group %d journaled: promoted", req, journaled)
		}
	}
	if _, fenced := s.Replica().Generation(); fenced {
		t.Fatal("a refused promotion fenced the secondary")
	}
	if _, err := failover.ReadPromotion(nil, PromotedDir(cfg)); !errors.Is(err, failover.ErrNotPromoted) {
		t.Fatalf("a refused promotion left a record: %v", err)
	}
	if err := p.Write(context.Background(), cfg.VolumeNames()[0], make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the secondary to journal more", func() bool {
		return s.Replica().Stats().JournaledGroup > journaled && s.Status().Link == "connected"
	})
	select {
	case <-s.done:
		t.Fatalf("the secondary stopped: %v", s.err)
	default:
	}
}

// holdWaitsForTheWrite holds g, with one write under way: the hold returns
// once the write leaves.
func holdWaitsForTheWrite(t *testing.T, g *writeGate) {
	t.Helper()
	held := make(chan error, 1)
	go func() { held <- g.hold(context.Background()) }()
	select {
	case err := <-held:
		t.Fatalf("hold returned (%v) with a write under way", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.leave()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

// The gate holds new writes once the writes under way have ended, lets
// them go on when released, and fails them with the refusal.
func TestWriteGate(t *testing.T) {
	g := newWriteGate()
	if err := g.enter(); err != nil {
		t.Fatal(err)
	}
	holdWaitsForTheWrite(t, g)
	entered := make(chan error, 2)
	go func() { entered <- g.enter() }()
	select {
	case err := <-entered:
		t.Fatalf("a write went through (%v) while writes were held", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.release()
	if err := <-entered; err != nil {
		t.Fatal(err)
	}
	g.leave()
	if err := g.hold(context.Background()); err != nil {
		t.Fatal(err)
	}
	go func() { entered <- g.enter() }()
	time.Sleep(20 * time.Millisecond)
	g.refuse(errSwitchedOver("then"))
	var errno nbd.Errno
	if err := <-entered; !errors.As(err, &errno) || errno != nbd.ESHUTDOWN {
		t.Fatalf("a held write after the refusal: %v, want ESHUTDOWN", err)
	}
	if err := g.enter(); !errors.As(err, &errno) || errno != nbd.ESHUTDOWN {
		t.Fatalf("a new write after the refusal: %v, want ESHUTDOWN", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g2 := newWriteGate()
	g2.enter()
	if err := g2.hold(ctx); err == nil {
		t.Fatal("hold with a write under way and its context ended: no error")
	}
	var nilGate *writeGate
	if err := nilGate.enter(); err != nil {
		t.Fatal(err)
	}
	nilGate.leave()
}

// The secondary lost while the writes are held, with a backlog the
// timeout does not let it ship: the switchover fails saying the writes
// resume, and they do; nothing is recorded, and the primary is still the
// primary.
func TestSwitchoverAbandonedWhenTheSecondaryGoesAway(t *testing.T) {
	cfg := switchoverConfig(t)
	s := startSecondaryForSwitchover(t, cfg)
	p, _ := startPrimaryForSwitchover(t, cfg)
	waitDuplex(t, p)
	vols := cfg.VolumeNames()
	// A link slow enough that the pause has a backlog to ship.
	slow := int64(64 << 10)
	if _, err := p.SetRates(nil, &slow); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	wr := startWriter(p, vols, stop)
	waitFor(t, time.Minute, "a backlog on the slow link", func() bool { return *p.Status().SidefileBytes > 1<<20 })
	type result struct {
		res control.SwitchoverResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := p.Switchover(context.Background(), 6*time.Second)
		done <- result{res, err}
	}()
	waitFor(t, time.Minute, "the writes to be held", func() bool {
		p.gate.mu.Lock()
		defer p.gate.mu.Unlock()
		return p.gate.held
	})
	s.stop() // the secondary's link and control address go away
	<-s.done
	r := <-done
	if r.err == nil || !strings.Contains(r.err.Error(), "writes resume") {
		t.Fatalf("switchover with the secondary gone: %+v, want an error saying the writes resume", r)
	}
	t.Logf("switchover with the secondary gone: %v", r.err)
	if err := p.Write(context.Background(), vols[0], make([]byte, 4096), 0); err != nil {
		t.Fatalf("a write after the abandoned switchover: %v", err)
	}
	close(stop)
	if acked, werr := wr.wait(); werr != nil || len(acked) == 0 {
		t.Errorf("the writer: %d writes acknowledged, %v", len(acked), werr)
	}
	if _, err := failover.ReadSwitchover(nil, PairStateDir(cfg)); !errors.Is(err, failover.ErrNoSwitchover) {
		t.Errorf("an abandoned switchover left a record: %v", err)
	}
	if st := p.Status(); st.Role != "primary" || st.SwitchedOverAt != "" {
		t.Errorf("after an abandoned switchover: role %q, switched_over_at %q", st.Role, st.SwitchedOverAt)
	}
}

// A primary that stopped in the middle of a switchover, after it asked the
// other site to take over, does not start until the operator has looked;
// once the record is removed (the other site did not take over), it
// starts.
func TestPrimaryStoppedInASwitchoverWaitsForTheOperator(t *testing.T) {
	cfg := linkConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	startedAndStopped(t, cfg, quiet)
	rec := failover.Switchover{Session: cfg.Session, State: failover.SwitchoverPending, At: time.Now().UnixNano(), Group: 7}
	if err := failover.WriteSwitchover(nil, PairStateDir(cfg), rec); err != nil {
		t.Fatal(err)
	}
	_, err := OpenPrimary(cfg, quiet, PrimaryOptions{})
	if err == nil || !strings.Contains(err.Error(), "middle of a switchover") || !strings.Contains(err.Error(), failover.SwitchoverFile) {
		t.Fatalf("a primary stopped in a switchover started: %v, want a refusal naming the record", err)
	}
	if err := failover.RemoveSwitchover(nil, PairStateDir(cfg)); err != nil {
		t.Fatal(err)
	}
	p, err := OpenPrimary(cfg, quiet, PrimaryOptions{})
	if err != nil {
		t.Fatalf("with the record removed: %v", err)
	}
	stopAtOnce(p)
}

// enterNow, for the NBD server's read loop, never waits: while writes are
// held it says so and the write does not enter (the hold's wait is not for
// it); once refused it returns the refusal; otherwise the write is under
// way, and a hold waits for it. A primary export's WriteNow is held so,
// before it touches the subsystem.
func TestWriteGateEnterNow(t *testing.T) {
	g := newWriteGate()
	if held, err := g.enterNow(); held || err != nil {
		t.Fatalf("an open gate: held %v, %v", held, err)
	}
	holdWaitsForTheWrite(t, g)
	if h, err := g.enterNow(); !h || err != nil {
		t.Fatalf("writes held: held %v, %v", h, err)
	}
	x := &primaryExport{name: "vol1", gate: g} // no subsystem: touching it panics
	if h, err := x.WriteNow(make([]byte, 4096), 0); !h || err != nil {
		t.Fatalf("a primary export's WriteNow, writes held: held %v, %v", h, err)
	}
	if err := g.hold(context.Background()); err != nil {
		t.Fatalf("a write that did not enter is waited for: %v", err)
	}
	g.refuse(errSwitchedOver("then"))
	var errno nbd.Errno
	if h, err := g.enterNow(); h || !errors.As(err, &errno) || errno != nbd.ESHUTDOWN {
		t.Fatalf("refused: held %v, %v, want ESHUTDOWN", h, err)
	}
	if h, err := x.WriteNow(make([]byte, 4096), 0); h || !errors.As(err, &errno) || errno != nbd.ESHUTDOWN {
		t.Fatalf("a primary export's WriteNow, refused: held %v, %v, want ESHUTDOWN", h, err)
	}
	var nilGate *writeGate
	if h, err := nilGate.enterNow(); h || err != nil {
		t.Fatalf("no gate: held %v, %v", h, err)
	}
}
