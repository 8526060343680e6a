package site

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"duplex/transport"
)

// stopRig is a primary and its secondary of rejoinConfig joined by an
// in-memory link (fwd, to cut it), the primary's drain waiting patience
// on a link that is down and its stop's drain a minute at most.
type stopRig struct {
	fwd      *transport.MemNetwork
	sec      *Secondary
	prim     *Primary
	logs     *logBuffer
	runErr   error
	stopPrim func()
}

func newStopRig(t *testing.T, patience time.Duration) *stopRig {
	t.Helper()
	return newStopRigDialing(t, patience, nil)
}

// newStopRigDialing is newStopRig with the primary dialling through
// dial(fwd) where dial is not nil.
func newStopRigDialing(t *testing.T, patience time.Duration, dial func(transport.Dialer) transport.Dialer) *stopRig {
	t.Helper()
	cfg := rejoinConfig(t)
	r := &stopRig{fwd: transport.NewMemNetwork(1, transport.Faults{}), logs: &logBuffer{}}
	log := slog.New(slog.NewTextHandler(r.logs, nil))
	sec, err := OpenSecondary(cfg, log, SecondaryOptions{Listener: r.fwd})
	if err != nil {
		t.Fatal(err)
	}
	r.sec = sec
	runFor(t, sec.Run)
	var dialer transport.Dialer = r.fwd
	if dial != nil {
		dialer = dial(r.fwd)
	}
	r.prim, err = OpenPrimary(cfg, log, PrimaryOptions{Dialer: dialer, Retransmit: 40 * time.Millisecond, HandshakeTimeout: 500 * time.Millisecond,
		unreachablePatience: patience})
	if err != nil {
		t.Fatal(err)
	}
	r.stopPrim = runFor(t, func(ctx context.Context) error { r.runErr = r.prim.Run(ctx, time.Minute); return r.runErr })
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(r.prim.Status()) })
	if err := r.prim.Write(context.Background(), "vol1", bytes.Repeat([]byte{1}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	quiesceMover(t, r.prim)
	return r
}

// TestAStopWithTheLinkLongDownEndsAtOnce: a stop whose link to the
// secondary has been down for longer than a drain waits for one (the
// patience) ends, not clean, once the mover's next dial (at most a second
// away) fails too, rather than wait the patience again for nothing: the
// next start copies the same regions either way.
func TestAStopWithTheLinkLongDownEndsAtOnce(t *testing.T) {
	const patience = 4 * time.Second
	r := newStopRig(t, patience)
	r.fwd.SetDown(true)
	if err := r.prim.Write(context.Background(), "vol1", bytes.Repeat([]byte{2}, 4096), 1<<20); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the link down for longer than the patience", func() bool {
		up, since := r.prim.Mover().Link()
		return !up && time.Since(since) > patience+200*time.Millisecond
	})
	start := time.Now()
	r.stopPrim()
	took := time.Since(start)
	if took >= patience/2 { // a redial's pause and the stop's own steps
		t.Errorf("the stop took %s with the link down for longer than the patience (%s): it waited for a link that had had its patience",
			took.Round(time.Millisecond), patience)
	}
	if r.runErr == nil {
		t.Error("the stop reported clean with a write never shipped")
	}
	t.Logf("stopped after %s: %v", took.Round(time.Millisecond), r.runErr)
}

// TestAStopWaitsForALinkJustDown: a stop whose link went down just before
// it waits for the link, up to the patience: a link that comes back
// meanwhile (the mover redials) takes what is held, and the stop is
// clean, the next start copying nothing.
func TestAStopWaitsForALinkJustDown(t *testing.T) {
	const patience = 8 * time.Second
	r := newStopRig(t, patience)
	r.fwd.SetDown(true)
	if err := r.prim.Write(context.Background(), "vol1", bytes.Repeat([]byte{2}, 4096), 1<<20); err != nil {
		t.Fatal(err)
	}
	back := time.AfterFunc(500*time.Millisecond, func() { r.fwd.SetDown(false) })
	defer back.Stop()
	start := time.Now()
	r.stopPrim()
	if r.runErr != nil {
		t.Fatalf("the stop, the link back within the patience, failed after %s: %v", time.Since(start).Round(time.Millisecond), r.runErr)
	}
	if len(r.logs.lines("everything shipped to the secondary")) == 0 {
		t.Errorf("the stop did not say everything shipped:\n%s", r.logs.String())
	}
}

// TestAStopWaitsForALinkLongDownThatIsBack: a stop whose link had been
// down for longer than the patience, and is back as the stop begins (the
// network returned, the mover has not dialled since), waits for the
// mover's next dial, which finds it: the stop ships what is held, clean.
func TestAStopWaitsForALinkLongDownThatIsBack(t *testing.T) {
	const patience = 2 * time.Second
	r := newStopRig(t, patience)
	r.fwd.SetDown(true)
	if err := r.prim.Write(context.Background(), "vol1", bytes.Repeat([]byte{2}, 4096), 1<<20); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the link down for longer than the patience", func() bool {
		up, since := r.prim.Mover().Link()
		return !up && time.Since(since) > patience+200*time.Millisecond
	})
	r.fwd.SetDown(false)
	start := time.Now()
	r.stopPrim()
	if r.runErr != nil {
		t.Fatalf("the stop, the link back as it began, failed after %s: %v", time.Since(start).Round(time.Millisecond), r.runErr)
	}
	if len(r.logs.lines("everything shipped to the secondary")) == 0 {
		t.Errorf("the stop did not say everything shipped:\n%s", r.logs.String())
	}
}

// stallingDialer dials through its Dialer, but while stall is set a dial
// waits until release and then fails, as one whose packets the network
// dropped fails at its timeout.
type stallingDialer struct {
	transport.Dialer
	mu      sync.Mutex
	stall   bool
	stalled chan struct{} // closed once a dial waits
	release chan struct{}
}

func (d *stallingDialer) Dial(ctx context.Context) (transport.Conn, error) {
	d.mu.Lock()
	stall := d.stall
	if stall {
		d.stall = false
		close(d.stalled)
	}
	d.mu.Unlock()
	if !stall {
		return d.Dialer.Dial(ctx)
	}
	select {
	case <-d.release:
	case <-ctx.Done():
	}
	return nil, errors.New("dial tcp: i/o timeout")
}

// TestAStopWaitsForALinkLongDownThatIsBackPastADialInFlight: the link
// down for longer than the patience, a dial sent while the network was
// down still in flight as the network comes back and the stop begins,
// and failing only after: that failure says nothing of the secondary as
// the stop began. The stop waits for the dial after it, which finds the
// secondary: shipped, clean.
func TestAStopWaitsForALinkLongDownThatIsBackPastADialInFlight(t *testing.T) {
	const patience = 2 * time.Second
	d := &stallingDialer{stalled: make(chan struct{}), release: make(chan struct{})}
	r := newStopRigDialing(t, patience, func(fwd transport.Dialer) transport.Dialer { d.Dialer = fwd; return d })
	r.fwd.SetDown(true)
	if err := r.prim.Write(context.Background(), "vol1", bytes.Repeat([]byte{2}, 4096), 1<<20); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the link down for longer than the patience", func() bool {
		up, since := r.prim.Mover().Link()
		return !up && time.Since(since) > patience+200*time.Millisecond
	})
	d.mu.Lock()
	d.stall = true
	d.mu.Unlock()
	select {
	case <-d.stalled:
	case <-time.After(time.Minute):
		t.Fatal("the mover dialled no more")
	}
	r.fwd.SetDown(false)
	time.AfterFunc(100*time.Millisecond, func() { close(d.release) })
	start := time.Now()
	r.stopPrim()
	if r.runErr != nil {
		t.Fatalf("the stop, the network back as it began and a dial from before failing after, failed after %s: %v", time.Since(start).Round(time.Millisecond), r.runErr)
	}
	if len(r.logs.lines("everything shipped to the secondary")) == 0 {
		t.Errorf("the stop did not say everything shipped:\n%s", r.logs.String())
	}
}
