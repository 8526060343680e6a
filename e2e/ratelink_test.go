package e2e

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"duplex/consistency"
	"duplex/ratelimit"
	"duplex/transport"
	"duplex/workload"
)

// TestRateLimitedLinkCarriesFramesLongerThanSilence: a link limit so low
// that one frame takes longer to pass than the mover's retransmission time
// (500 ms) and its silence time (5 s) delivers the frame once, without
// giving up the connection. Counted from when a frame was handed to the
// link rather than from when its last byte left, both ran out while the
// frame was still waiting for its rate: the frame was queued to go again
// as soon as it had gone.
func TestRateLimitedLinkCarriesFramesLongerThanSilence(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a frame to pass a slow link")
	}
	dir := t.TempDir()
	net := transport.NewMemNetwork(1, transport.Faults{})
	const bps = 96 << 10 // 1 MiB takes about 11 s
	lim := ratelimit.New(bps)
	const blocks = 512 // 2 MiB volumes
	sec := startSecondary(t, dir, net, secondaryOpts{blocks: blocks})
	p := startPrimary(t, dir, primaryOpts{interval: 10 * time.Millisecond, retransmit: 500 * time.Millisecond,
		dialer: &transport.LimitedDialer{Dialer: net, Limit: lim}, blocks: blocks})
	data := bytes.Repeat([]byte{0xa5}, 1<<20)
	if err := p.WriteAt(context.Background(), 0, data, 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := p.mover.Quiesce(ctx); err != nil {
		t.Fatalf("1 MiB over a %d B/s link not acknowledged within 90s: %v; %s", bps, err, replicationState(p.mover, sec.sec))
	}
	st := p.mover.Stats()
	t.Logf("1 MiB acknowledged after %s over a %d B/s link; %d bytes sent, %d resends", time.Since(start).Round(time.Millisecond), bps, st.BytesSent, st.Resends)
	// Retransmission is for frames the secondary did not get: one still
	// passing the link's rate limit, or just through it, is not lost.
	if st.Resends > 0 {
		t.Errorf("%d resends of a frame that was never lost (it was still passing the link's rate limit)", st.Resends)
	}
	waitFor(t, 10*time.Second, "the secondary to apply the write", func() bool {
		return sec.sec.Stats().Group >= p.mover.Stats().Acked.Group
	})
	assertConverged(t, layout.Volumes, blocks, p.read, sec.read)
}

// ackCounter counts the writes acknowledged to the workload's clients.
type ackCounter struct {
	t     workload.Target
	acked atomic.Int64
}

func (c *ackCounter) WriteAt(ctx context.Context, vol int, p []byte, off int64) error {
	err := c.t.WriteAt(ctx, vol, p, off)
	if err == nil {
		c.acked.Add(1)
	}
	return err
}

// TestRateLimitedLinkBelowWriteRatePacesWrites: with a link limited far
// below what the clients write, the sidefile fills and writes go on at the
// link's pace, never stuck; the link stays up (a frame that waits for its
// rate is not taken for a silent secondary); the secondary holds a prefix
// after every group; and once the limit is lifted, everything acknowledged
// arrives.
func TestRateLimitedLinkBelowWriteRatePacesWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("runs writes over a slow link for seconds")
	}
	dir := t.TempDir()
	net := transport.NewMemNetwork(1, transport.Faults{})
	const bps = 128 << 10
	lim := ratelimit.New(bps)
	var bad violations
	sec := startSecondary(t, dir, net, secondaryOpts{onApplied: func(s *secondarySite, g *consistency.Group) {
		vs, err := workload.Check(layout, s.readDirect)
		bad.add(g.Number, vs, err)
	}})
	const side = 1 << 20
	p := startPrimary(t, dir, primaryOpts{interval: 10 * time.Millisecond, sidefile: side,
		dialer: &transport.LimitedDialer{Dialer: net, Limit: lim}})
	tg := &ackCounter{t: p}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := workload.Run(ctx, layout, tg, 0, 5)
		done <- err
	}()
	var fullest int64
	last, lastAt := int64(0), time.Now()
	var longest time.Duration
	for end := time.Now().Add(12 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		for _, ss := range p.subs {
			fullest = max(fullest, ss.Sidefile().Stats().Used)
		}
		if n := tg.acked.Load(); n != last {
			longest = max(longest, time.Since(lastAt))
			last, lastAt = n, time.Now()
		}
		if time.Since(lastAt) > 20*time.Second {
			break
		}
		if n, list := bad.snapshot(); len(list) > 0 {
			t.Fatalf("violations after %d groups:\n%v", n, list)
		}
	}
	longest = max(longest, time.Since(lastAt))
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("workload: %v", err)
	}
	st := p.mover.Stats()
	t.Logf("%d writes acknowledged over a %d B/s link; longest wait for one %s; fullest sidefile %d of %d; %d bytes sent, %d resends, %d connects",
		last, bps, longest.Round(time.Millisecond), fullest, side, st.BytesSent, st.Resends, st.Connects)
	if longest > 20*time.Second {
		t.Fatalf("no write acknowledged for %s over a %d B/s link: writes are stuck; %s", longest, bps, replicationState(p.mover, sec.sec))
	}
	if fullest < side/2 {
		t.Errorf("the sidefile never passed half full (%d of %d): the link limit was not below the write rate, so this tested nothing", fullest, side)
	}
	if st.Connects != 1 {
		t.Errorf("%d connects: the rate-limited link was given up and redialled", st.Connects)
	}
	lim.SetRate(0)
	quiesce(t, p, sec)
	if n, list := bad.snapshot(); len(list) > 0 {
		t.Fatalf("violations after %d groups:\n%v", n, list)
	}
	assertConverged(t, layout.Volumes, layout.BlocksPerVolume, p.read, sec.read)
}

// TestRateLimitedLinkStopEndsTheWait: the mover's end interrupts a frame
// waiting for a link limit it would need minutes to pass.
func TestRateLimitedLinkStopEndsTheWait(t *testing.T) {
	dir := t.TempDir()
	net := transport.NewMemNetwork(1, transport.Faults{})
	lim := ratelimit.New(1 << 10) // 256 KiB takes minutes
	startSecondary(t, dir, net, secondaryOpts{})
	p := startPrimary(t, dir, primaryOpts{interval: 10 * time.Millisecond, dialer: &transport.LimitedDialer{Dialer: net, Limit: lim}})
	if err := p.WriteAt(context.Background(), 0, bytes.Repeat([]byte{1}, 256<<10), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the link", func() bool { return p.mover.Stats().Connected })
	time.Sleep(300 * time.Millisecond) // the frame is waiting for its rate
	p.cancel()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		dumpGoroutines(t)
		t.Fatal("the mover did not stop within 10s of its context's end while a frame waited for the link's rate limit")
	}
}
