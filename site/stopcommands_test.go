package site

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"errors"

	"duplex/config"
	"duplex/control"
	"duplex/failover"
	"duplex/pair"
	"duplex/transport"
)

// stoppedPairs is the pair state a stopped primary left in pairs.json.
type stoppedPairs struct {
	Clean bool        `json:"clean"`
	Pairs []pair.Pair `json:"pairs"`
}

func readStoppedPairs(t *testing.T, dir string) stoppedPairs {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "pairs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st stoppedPairs
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// primaryCommandRig is the config of a primary with a control address
// whose secondary runs until the test ends, and the dialer of its link.
func primaryCommandRig(t *testing.T) (*config.Config, transport.Dialer) {
	t.Helper()
	cfg := switchoverConfig(t)
	cfg.Primary.Control = "127.0.0.1:0"
	startSecondaryForSwitchover(t, cfg)
	return cfg, linkDialer(t, cfg)
}

// Operator commands that reach the primary once its stop has saved the
// pair state clean, while its control address still answers, must not
// change that state: each is refused ("stopping"), status still answers,
// and the state the stop saved (clean, every pair duplex) is what the next
// start finds. A command answered as done would be lost, or would turn the
// clean stop into a copy of every marked region.
func TestCommandsWhileThePrimaryStopsAreRefused(t *testing.T) {
	cfg, dialer := primaryCommandRig(t)
	saved, release := make(chan struct{}), make(chan struct{})
	p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), PrimaryOptions{
		Dialer:        dialer,
		afterStopSave: func() { close(saved); <-release }})
	if err != nil {
		t.Fatal(err)
	}
	var runErr error
	stop := runUntil(t, func(ctx context.Context) { runErr = p.Run(ctx, 30*time.Second) })
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	waitDuplex(t, p)
	at := control.Endpoint{Addr: p.ControlAddr()}
	tok := "switchover-test-token"
	vols := cfg.VolumeNames()

	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-saved:
	case <-time.After(time.Minute):
		t.Fatal("the stop did not save the pair state within a minute")
	}
	if st := readStoppedPairs(t, p.stateDir); !st.Clean {
		t.Fatalf("the stop saved clean:false before any command: %+v", st)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type call struct {
		what string
		do   func() error
	}
	pairOp := func(vol, op string) call {
		return call{"pair " + op + " " + vol, func() error {
			_, err := control.PairOp(ctx, at, tok, vol, op, false)
			return err
		}}
	}
	calls := []call{
		pairOp(vols[0], "suspend"),
		pairOp(vols[0], "resume"),
		pairOp(vols[1], "delete"),
		pairOp(vols[1], "add"),
		{"pair suspend --all", func() error {
			_, err := control.AllPairsOp(ctx, at, tok, "suspend", false)
			return err
		}},
		{"pair resume --all", func() error {
			_, err := control.AllPairsOp(ctx, at, tok, "resume", false)
			return err
		}},
		{"pair rate", func() error {
			n := int64(1 << 20)
			_, err := control.SetRates(ctx, at, tok, &n, nil)
			return err
		}},
	}
	var answered []string
	for _, c := range calls {
		err := c.do()
		switch {
		case err == nil:
			answered = append(answered, c.what)
		case !strings.Contains(err.Error(), "stopping"):
			t.Errorf("%s while the primary stops: %v, want a refusal that says it is stopping", c.what, err)
		}
	}
	if len(answered) > 0 {
		t.Errorf("answered as done after the stop saved the pair state: %v", answered)
	}
	st, err := control.Fetch(ctx, at)
	if err != nil {
		t.Errorf("status while the primary stops: %v", err)
	} else if len(st.Volumes) != len(vols) {
		t.Errorf("status while the primary stops: %d volumes, want %d", len(st.Volumes), len(vols))
	}

	close(release)
	<-stopped
	if runErr != nil {
		t.Fatalf("the stop, linked to the secondary: %v, want a clean stop", runErr)
	}
	got := readStoppedPairs(t, p.stateDir)
	if !got.Clean {
		t.Errorf("pairs.json after the stop: clean:false, want the clean stop it saved")
	}
	for _, pr := range got.Pairs {
		if pr.State != pair.Duplex || pr.Deleted {
			t.Errorf("pairs.json after the stop: %s %s (deleted %v), want duplex as the stop saved it", pr.Volume, pr.State, pr.Deleted)
		}
	}
}

// fenceHeld is a running secondary, linked until its primary (now
// stopped) had every pair duplex, that a switchover's promotion request
// (id) reached: the promotion has checked the request and is held before
// its fence until release.
type fenceHeld struct {
	cfg *config.Config
	s   *Secondary
	at  control.Endpoint
	tok string
	// stop stops the secondary; ran is closed once its Run returned,
	// with runErr.
	stop     func()
	ran      chan struct{}
	runErr   error
	release  func()
	answered chan promoteAnswer
}

type promoteAnswer struct {
	res control.PromoteResult
	err error
}

func holdAtFence(t *testing.T, id string) *fenceHeld {
	t.Helper()
	cfg := switchoverConfig(t)
	s, err := OpenSecondary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), SecondaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := &fenceHeld{cfg: cfg, s: s, ran: make(chan struct{}), answered: make(chan promoteAnswer, 1)}
	checked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h.release = func() { once.Do(func() { close(release) }) }
	s.beforeFence = func() { close(checked); <-release }
	cfg.Primary.Secondary, cfg.Secondary.Control = s.ListenAddr(), s.ControlAddr()
	h.stop = runUntil(t, func(ctx context.Context) { defer close(h.ran); h.runErr = s.Run(ctx) })
	t.Cleanup(h.release)
	p, stopPrimary := startPrimaryForSwitchover(t, cfg)
	waitDuplex(t, p)
	// As a switchover does, the primary's writes held: nothing more to
	// journal than the group it acknowledged.
	acked := p.Mover().Stats().Acked
	stopPrimary()
	if h.tok, err = control.ReadToken(cfg.TokenPath()); err != nil {
		t.Fatal(err)
	}
	h.at = control.Endpoint{Addr: s.ControlAddr()}
	req := control.PromoteRequest{Session: cfg.Session, ID: id, Group: acked.Group, ConsistencyTime: acked.Time}
	go func() {
		res, err := control.PromoteSecondary(context.Background(), h.at, h.tok, req)
		h.answered <- promoteAnswer{res, err}
	}()
	select {
	case <-checked:
	case <-time.After(30 * time.Second):
		t.Fatal("the promotion did not reach its fence within 30s")
	}
	return h
}

// A promotion in place that a running secondary accepted just before it
// was stopped is carried out before the stop closes the journal and the
// volumes, or not at all: its answer says what the site is after the
// stop (promoted, with its record on disk, and Run says so; or refused,
// nothing recorded, not fenced), and it never runs on closed state.
func TestAPromotionUnderWayWhenTheSecondaryStopsIsAnsweredAsItEnded(t *testing.T) {
	h := holdAtFence(t, "00000000000000d1")
	go h.stop()
	// The stop goes as far as it goes while the promotion waits: on main
	// it closed the journal and the volumes under it.
	stoppedFirst := false
	select {
	case <-h.ran:
		stoppedFirst = true
	case <-time.After(time.Second):
	}
	h.release()
	var a promoteAnswer
	select {
	case a = <-h.answered:
	case <-time.After(time.Minute):
		t.Fatal("no answer to the promotion within a minute")
	}
	<-h.ran
	t.Logf("the promotion's answer: %+v, %v; Run: %v (ended before the promotion went on: %v)", a.res, a.err, h.runErr, stoppedFirst)
	if stoppedFirst {
		t.Errorf("the secondary's Run ended, its journal and volumes closed, while a promotion it accepted was under way")
	}
	_, recErr := failover.ReadPromotion(nil, PromotedDir(h.cfg))
	recorded := recErr == nil
	switch {
	case a.err == nil && a.res.State == control.PromoteDone:
		if !recorded {
			t.Errorf("answered promoted, but no promotion is recorded: %v", recErr)
		}
		if !errors.Is(h.runErr, ErrPromoted) {
			t.Errorf("answered promoted, but the secondary's Run ended with %v, not ErrPromoted: its daemon does not know", h.runErr)
		}
	case a.res.State == control.PromoteRefused:
		if recorded {
			t.Errorf("answered refused, but the promotion is recorded")
		}
		// Nothing changed: the secondary opens again, not fenced.
		again, err := OpenSecondary(h.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), SecondaryOptions{Offline: true})
		if err != nil {
			t.Fatalf("the secondary, after a promotion refused at its stop: %v", err)
		}
		defer again.Close()
		if _, fenced := again.Replica().Generation(); fenced {
			t.Errorf("answered refused, but the secondary is fenced")
		}
	default:
		t.Errorf("the promotion's answer says neither promoted nor refused: %+v, %v (recorded: %v)", a.res, a.err, recorded)
	}
}

// A primary a switchover handed the session away from stops replicating
// as at a clean stop, saving its pairs, and serves status until it is
// stopped: an operator's command there would change the pairs after that
// save, of a site that is no longer the primary. It is refused, and says
// where the primary is now.
func TestCommandsAtASwitchedOverPrimaryAreRefused(t *testing.T) {
	cfg := switchoverConfig(t)
	cfg.Primary.Control = "127.0.0.1:0"
	startSecondaryForSwitchover(t, cfg)
	p, _ := startPrimaryForSwitchover(t, cfg)
	waitDuplex(t, p)
	if _, err := p.Switchover(context.Background(), time.Minute); err != nil {
		t.Fatalf("switchover: %v", err)
	}
	waitFor(t, 30*time.Second, "the switched-over primary to save its pairs clean", func() bool {
		b, err := os.ReadFile(filepath.Join(p.stateDir, "pairs.json"))
		var st stoppedPairs
		return err == nil && json.Unmarshal(b, &st) == nil && st.Clean
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	at := control.Endpoint{Addr: p.ControlAddr()}
	vol := cfg.VolumeNames()[0]
	_, err := control.PairOp(ctx, at, "switchover-test-token", vol, "suspend", false)
	if err == nil || !strings.Contains(err.Error(), "switched over") {
		t.Errorf("pair suspend %s at the switched-over primary: %v, want a refusal that says it was switched over", vol, err)
	}
	if st, err := control.Fetch(ctx, at); err != nil || st.Role != "switched-over" {
		t.Errorf("status at the switched-over primary: role %q, %v", st.Role, err)
	}
	got := readStoppedPairs(t, p.stateDir)
	if !got.Clean {
		t.Error("pairs.json at the switched-over primary: clean:false after a command, want the clean stop it saved")
	}
	for _, pr := range got.Pairs {
		if pr.State != pair.Duplex {
			t.Errorf("pairs.json at the switched-over primary: %s %s, want duplex as saved", pr.Volume, pr.State)
		}
	}
}

// A switchover whose promotion request reaches a secondary that is
// stopping is refused there before any promotion began ("stopping"): the
// switchover is abandoned and the writes go on, as for a request turned
// away for its token, rather than held in doubt until that secondary is
// started again.
func TestASwitchoverToAStoppingSecondaryIsAbandoned(t *testing.T) {
	cfg := switchoverConfig(t)
	s := startSecondaryForSwitchover(t, cfg)
	p, _ := startPrimaryForSwitchover(t, cfg)
	waitDuplex(t, p)
	s.controlServer.Load().StopChanges(control.Stopping("the secondary"))
	_, err := p.Switchover(context.Background(), 20*time.Second)
	if err == nil || !strings.Contains(err.Error(), "abandoned") || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("a switchover to a stopping secondary: %v, want it abandoned, saying the secondary is stopping", err)
	}
	switchoverAbandoned(t, p, cfg)
}

// recover's fence of a running secondary and a switchover's promotion in
// place that meet are carried out one after the other, and each answer
// says what the other did: a fence answered while the promotion went on
// told the operator the site was fenced (stop it, use the volumes) while
// it became the primary, and a promotion that failed after its fence
// would have undone recover's fence with its own.
func TestRecoversFenceAndAPromotionInPlaceDoNotBothSucceed(t *testing.T) {
	h := holdAtFence(t, "00000000000000e1")
	fenced := make(chan error, 1)
	go func() { fenced <- control.FenceSecondary(context.Background(), h.at, h.tok) }()
	// The fence, on main, answered at once, the promotion held.
	var ferr error
	fenceAnswered := false
	select {
	case ferr = <-fenced:
		fenceAnswered = true
	case <-time.After(time.Second):
	}
	h.release()
	a := <-h.answered
	perr := a.err
	if perr == nil && a.res.State != control.PromoteDone {
		perr = errors.New("answered " + a.res.State)
	}
	if !fenceAnswered {
		ferr = <-fenced
	}
	t.Logf("promotion: %v; fence: %v", perr, ferr)
	switch {
	case perr == nil && ferr == nil:
		t.Error("both the promotion in place and recover's fence answered done: the operator was told to use the volumes of a site that became the primary")
	case perr == nil && !strings.Contains(ferr.Error(), "promoted"):
		t.Errorf("the fence of a site promoted meanwhile: %v, want a refusal that says it was promoted", ferr)
	case perr != nil && ferr != nil:
		t.Errorf("neither the promotion (%v) nor the fence (%v) went through", perr, ferr)
	}
}

// switchoverAbandoned checks what a switchover refused or abandoned leaves
// at the primary: writes go on, and no record stops a restart.
func switchoverAbandoned(t *testing.T, p *Primary, cfg *config.Config) {
	t.Helper()
	wrote := make(chan error, 1)
	go func() { wrote <- p.Write(context.Background(), cfg.VolumeNames()[0], make([]byte, 4096), 0) }()
	select {
	case err := <-wrote:
		if err != nil {
			t.Errorf("a write after the switchover's refusal was refused: %v, want it to go on", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("a write after the switchover's refusal is held 10s on, want it to go on")
	}
	if _, err := failover.ReadSwitchover(nil, PairStateDir(cfg)); !errors.Is(err, failover.ErrNoSwitchover) {
		t.Errorf("a refused switchover left a record: %v, want none", err)
	}
}
