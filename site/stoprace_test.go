package site

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"duplex/control"
	"duplex/failover"
	"duplex/pair"
	"duplex/transport"
)

// Each operator command at the primary, met by the primary's stop at a
// moment of its own (before, during or after the command's work): the
// stop ends (no command under way holds it for ever, nor it the command),
// and what the command was told is what the stop saved: a command answered
// done has its effect in pairs.json, one refused leaves the pairs as they
// were.
func TestEachCommandMetByTheStopIsAnsweredAsTheStopSavedIt(t *testing.T) {
	cfg, dialer := primaryCommandRig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tok := "switchover-test-token"
	vols := cfg.VolumeNames()
	suspended := func(st stoppedPairs, vol string) bool {
		for _, p := range st.Pairs {
			if p.Volume == vol {
				// A deleted pair is no pair: --all leaves it.
				return p.State == pair.Suspended && !p.Deleted
			}
		}
		return false
	}
	deleted := func(st stoppedPairs, vol string) bool {
		for _, p := range st.Pairs {
			if p.Volume == vol {
				return p.Deleted
			}
		}
		return false
	}
	// --all acts on the pairs there are: one that a delete answered done
	// (and an add then refused) stays deleted, left as it was.
	all := func(st stoppedPairs, cond func(stoppedPairs, string) bool, want bool) bool {
		for _, v := range vols {
			if !deleted(st, v) && cond(st, v) != want {
				return false
			}
		}
		return true
	}
	type command struct {
		what string
		do   func(ctx context.Context, at control.Endpoint) error
		// done says whether the command's effect is in st.
		done func(st stoppedPairs) bool
	}
	pairOp := func(vol, op string, drain bool, done func(stoppedPairs) bool) command {
		return command{"pair " + op + " " + vol, func(ctx context.Context, at control.Endpoint) error {
			_, err := control.PairOp(ctx, at, tok, vol, op, drain)
			return err
		}, done}
	}
	allOp := func(op string, drain bool, done func(stoppedPairs) bool) command {
		return command{"pair " + op + " --all", func(ctx context.Context, at control.Endpoint) error {
			_, err := control.AllPairsOp(ctx, at, tok, op, drain)
			return err
		}, done}
	}
	commands := []command{
		pairOp(vols[0], "suspend", true, func(st stoppedPairs) bool { return suspended(st, vols[0]) }),
		pairOp(vols[0], "resume", false, func(st stoppedPairs) bool { return !suspended(st, vols[0]) }),
		pairOp(vols[1], "delete", false, func(st stoppedPairs) bool { return deleted(st, vols[1]) }),
		pairOp(vols[1], "add", false, func(st stoppedPairs) bool { return !deleted(st, vols[1]) }),
		allOp("suspend", true, func(st stoppedPairs) bool { return all(st, suspended, true) }),
		allOp("resume", false, func(st stoppedPairs) bool { return all(st, suspended, false) }),
	}
	// More rounds to hunt: DUPLEX_STOP_ROUNDS=50.
	rounds := 2
	if n, err := strconv.Atoi(os.Getenv("DUPLEX_STOP_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	for round := range rounds {
		for _, c := range commands {
			var before *stoppedPairs
			if round > 0 || c.what != commands[0].what {
				st := readStoppedPairs(t, PairStateDir(cfg))
				before = &st
			}
			p, err := OpenPrimary(cfg, quiet, PrimaryOptions{Dialer: dialer})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			go func() { ran <- p.Run(ctx, 30*time.Second) }()
			waitFor(t, time.Minute, "the primary to link", func() bool { return p.Status().Link == "connected" })
			for i := range 8 {
				if err := p.Write(context.Background(), vols[i%len(vols)], make([]byte, 64<<10), int64(i)*(64<<10)); err != nil {
					t.Fatalf("a write before %s: %v", c.what, err)
				}
			}
			at := control.Endpoint{Addr: p.ControlAddr()}
			answered := make(chan error, 1)
			go func() {
				cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
				defer ccancel()
				answered <- c.do(cctx, at)
			}()
			time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
			cancel()
			select {
			case err := <-ran:
				// The secondary runs and the link is up: the stop ships
				// everything, whatever the command did.
				if err != nil {
					t.Errorf("round %d, %s: the stop: %v", round, c.what, err)
				}
			case <-time.After(2 * time.Minute):
				t.Fatalf("round %d, %s: the stop did not end within 2 minutes", round, c.what)
			}
			cerr := <-answered
			st := readStoppedPairs(t, p.stateDir)
			t.Logf("round %d, %s: %v; saved clean %v", round, c.what, cerr, st.Clean)
			if !st.Clean {
				t.Errorf("round %d, %s: the stop saved the pairs not clean, the secondary running and linked", round, c.what)
			}
			if cerr == nil && !c.done(st) {
				t.Errorf("round %d, %s answered done, but the stop saved it not done: %+v", round, c.what, st.Pairs)
			}
			if cerr != nil && before != nil && !c.done(*before) && c.done(st) {
				t.Errorf("round %d, %s refused (%v), but the stop saved its effect: %+v", round, c.what, cerr, st.Pairs)
			}
		}
	}
}

// A running secondary that a switchover's promotion request and recover's
// fence reach together, met by its stop at a moment of its own: the stop
// ends, and every answer agrees with what the next start finds. Promoted,
// the record is there and Run said so; fenced by recover, the next start
// is fenced; never both; refused, the request changed nothing.
func TestPromotionAndFenceMetByTheSecondarysStopAreAnsweredAsTheStopLeftThem(t *testing.T) {
	rounds := 2
	if n, err := strconv.Atoi(os.Getenv("DUPLEX_STOP_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for round := range rounds {
		cfg := switchoverConfig(t)
		s, err := OpenSecondary(cfg, quiet, SecondaryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Primary.Secondary, cfg.Secondary.Control = s.ListenAddr(), s.ControlAddr()
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan error, 1)
		go func() { ran <- s.Run(ctx) }()
		p, stopPrimary := startPrimaryForSwitchover(t, cfg)
		waitDuplex(t, p)
		acked := p.Mover().Stats().Acked
		stopPrimary()
		tok, err := control.ReadToken(cfg.TokenPath())
		if err != nil {
			t.Fatal(err)
		}
		at := control.Endpoint{Addr: s.ControlAddr()}
		req := control.PromoteRequest{Session: cfg.Session, ID: transport.NewGeneration().String(), Group: acked.Group, ConsistencyTime: acked.Time}
		// The promotion alone, the fence alone, or both.
		promoted, fenced := make(chan promoteAnswer, 1), make(chan error, 1)
		mode := rand.IntN(3)
		if mode != 1 {
			go func() {
				res, err := control.PromoteSecondary(context.Background(), at, tok, req)
				promoted <- promoteAnswer{res, err}
			}()
		} else {
			promoted <- promoteAnswer{err: errors.New("not asked")}
		}
		if mode != 0 {
			go func() { fenced <- control.FenceSecondary(context.Background(), at, tok) }()
		} else {
			fenced <- errors.New("not asked")
		}
		time.Sleep(time.Duration(rand.IntN(8000)) * time.Microsecond)
		cancel()
		var runErr error
		select {
		case runErr = <-ran:
		case <-time.After(2 * time.Minute):
			t.Fatalf("round %d: the secondary's stop did not end within 2 minutes", round)
		}
		a, ferr := <-promoted, <-fenced
		_, recErr := failover.ReadPromotion(nil, PromotedDir(cfg))
		recorded := recErr == nil
		t.Logf("round %d: promote %s %v; fence %v; Run %v; recorded %v", round, a.res.State, a.err, ferr, runErr, recorded)
		promoteDone := a.err == nil && a.res.State == control.PromoteDone
		if promoteDone && ferr == nil {
			t.Errorf("round %d: the promotion and recover's fence both answered done", round)
		}
		if promoteDone != recorded && (a.err == nil || a.res.State != "") && mode != 1 {
			t.Errorf("round %d: the promotion answered %s %v, but recorded: %v", round, a.res.State, a.err, recorded)
		}
		if recorded != errors.Is(runErr, ErrPromoted) {
			t.Errorf("round %d: recorded %v, but Run ended with %v", round, recorded, runErr)
		}
		if recorded {
			continue
		}
		again, err := OpenSecondary(cfg, quiet, SecondaryOptions{Offline: true})
		if err != nil {
			t.Fatalf("round %d: the secondary after its stop: %v", round, err)
		}
		_, isFenced := again.Replica().Generation()
		again.Close()
		if mode != 0 && ferr == nil && !isFenced {
			t.Errorf("round %d: recover's fence answered done, but the next start is not fenced", round)
		}
		if mode == 1 && ferr != nil && strings.Contains(ferr.Error(), "stopping") && isFenced {
			t.Errorf("round %d: recover's fence refused as stopping (%v), but the next start is fenced", round, ferr)
		}
	}
}

// A switchover, met by the stop of the primary or of the secondary at a
// moment of its own: both stops end, and the sites never both serve as
// the primary: a switchover answered abandoned leaves the secondary not
// promoted, one answered done leaves it promoted, and the primary's
// record says which (none, done, or pending while in doubt).
func TestASwitchoverMetByEitherStopLeavesOnePrimary(t *testing.T) {
	// A round whose promotion's answer is lost waits for it (promotedWait,
	// 30 s): too slow for the default run.
	rounds, err := strconv.Atoi(os.Getenv("DUPLEX_STOP_ROUNDS"))
	if err != nil || rounds <= 0 {
		t.Skip("rounds of a switchover met by a stop: set DUPLEX_STOP_ROUNDS=N to run N")
	}
	for round := range rounds {
		cfg := switchoverConfig(t)
		s := startSecondaryForSwitchover(t, cfg)
		p, stopPrimary := startPrimaryForSwitchover(t, cfg)
		waitDuplex(t, p)
		answered := make(chan error, 1)
		go func() {
			_, err := p.Switchover(context.Background(), 20*time.Second)
			answered <- err
		}()
		time.Sleep(time.Duration(rand.IntN(8000)) * time.Microsecond)
		which := "primary"
		stopped := make(chan struct{})
		if rand.IntN(2) == 0 {
			go func() { stopPrimary(); close(stopped) }()
		} else {
			which = "secondary"
			go func() { s.stop(); <-s.done; close(stopped) }()
		}
		var err error
		select {
		case err = <-answered:
		case <-time.After(2 * time.Minute):
			t.Fatalf("round %d: the switchover, met by the %s's stop, did not answer within 2 minutes", round, which)
		}
		select {
		case <-stopped:
		case <-time.After(2 * time.Minute):
			t.Fatalf("round %d: the %s's stop did not end within 2 minutes", round, which)
		}
		s.stop()
		<-s.done
		stopPrimary()
		_, recErr := failover.ReadPromotion(nil, PromotedDir(cfg))
		promoted := recErr == nil
		rec, swErr := failover.ReadSwitchover(nil, PairStateDir(cfg))
		t.Logf("round %d, the %s stopped: %v; promoted %v; primary's record %q %v", round, which, err, promoted, rec.State, swErr)
		switch {
		case err == nil && !promoted:
			t.Errorf("round %d: the switchover answered done, but the secondary is not promoted", round)
		case err != nil && strings.Contains(err.Error(), "abandoned") && promoted:
			t.Errorf("round %d: the switchover answered abandoned (%v), but the secondary is promoted: two primaries", round, err)
		case promoted && swErr != nil:
			t.Errorf("round %d: the secondary is promoted, but the primary keeps no record of the switchover (%v): it would start as the primary", round, swErr)
		case !promoted && err != nil && strings.Contains(err.Error(), "abandoned") && swErr == nil:
			t.Errorf("round %d: the switchover answered abandoned, but its record stays (%q)", round, rec.State)
		}
	}
}
