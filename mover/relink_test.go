package mover

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"duplex/transport"
)

// flakyDialer fails its first fails dials as a secondary that is down does
// (connection refused), then dials the in-memory network.
type flakyDialer struct {
	net   *transport.MemNetwork
	mu    sync.Mutex
	fails int
}

func (d *flakyDialer) Dial(ctx context.Context) (transport.Conn, error) {
	d.mu.Lock()
	fail := d.fails > 0
	if fail {
		d.fails--
	}
	d.mu.Unlock()
	if fail {
		return nil, fmt.Errorf("dial 127.0.0.1:7402: %w", syscall.ECONNREFUSED)
	}
	return d.net.Dial(ctx)
}

// pauses records the pauses the mover takes between dials, returning at
// once: the schedule is checked, not the clock.
type pauses struct {
	mu sync.Mutex
	ds []time.Duration
}

func (p *pauses) wait(ctx context.Context, d time.Duration) {
	p.mu.Lock()
	p.ds = append(p.ds, d)
	p.mu.Unlock()
	time.Sleep(time.Millisecond)
}

func (p *pauses) all() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Duration(nil), p.ds...)
}

// TestRelinksPromptlyAfterRefusals: the secondary refuses the primary for a
// while (it stopped on a full disk, or a fence was under way), then is
// restarted (dials are refused by the system meanwhile), then takes the
// primary again. Each retry backs off, so that a secondary that refuses is
// not hammered, but never so far that the link comes back long after the
// secondary would take it: the pause reached 5 s, so a primary whose
// sidefile had filled meanwhile found the link still down when
// suspend_after ran out, suspending the session and resyncing for what a
// prompt relink would have shipped.
func TestRelinksPromptlyAfterRefusals(t *testing.T) {
	var ps pauses
	net := transport.NewMemNetwork(1, transport.Faults{})
	d := &flakyDialer{net: net}
	p := startPrimary(t, options{subsystems: []string{"ss1"}, dialer: d, wait: ps.wait})
	p.net = net
	const refusals, downDials = 12, 12
	for range refusals {
		l, _ := p.accept(t)
		if err := l.conn.Send(transport.EncodeRefuse(transport.Refusal{Reason: "the secondary stopped: journal: no space left on device"})); err != nil {
			t.Fatal(err)
		}
		l.awaitClosed()
	}
	d.mu.Lock()
	d.fails = downDials
	d.mu.Unlock()
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	waitFor(t, "Connected", func() bool { return p.mover.Stats().Connected })

	got := ps.all()
	if len(got) < refusals+downDials {
		t.Fatalf("%d pauses between dials, want at least %d (one after each refusal and failed dial): %v", len(got), refusals+downDials, got)
	}
	const prompt = time.Second
	for i, d := range got {
		if d > prompt {
			t.Errorf("pause %d before dialing again is %v: a secondary that takes the primary again waits up to that long for it (pauses %v)", i, d, got)
			break
		}
	}
	// Not hammered: after many refusals in a row the pauses have grown.
	if last := got[refusals-1]; last < prompt/2 {
		t.Errorf("after %d refusals in a row the mover pauses only %v before dialing again (pauses %v)", refusals, last, got)
	}
	if last := got[len(got)-1]; last < prompt/2 {
		t.Errorf("after %d failed dials in a row the mover pauses only %v before dialing again (pauses %v)", downDials, last, got)
	}
}
