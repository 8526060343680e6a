package e2e

import (
	"bytes"
	"context"
	"testing"
	"time"

	"duplex/ratelimit"
	"duplex/transport"
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
