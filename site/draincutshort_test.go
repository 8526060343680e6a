package site

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"duplex/pair"
)

// TestADrainCutShortAsItEndsIsDone: a pair suspend --drain whose wait the
// stop cuts short (its context ended, as StopChanges ends it) just as the
// last acknowledgement comes has shipped everything: it suspends the
// pair and answers done, rather than refusing with "0 bytes of updates
// are still held for the secondary (0 record sets not yet acknowledged)".
func TestADrainCutShortAsItEndsIsDone(t *testing.T) {
	cfg, dialer := primaryCommandRig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var p *Primary
	p, err := OpenPrimary(cfg, quiet, PrimaryOptions{Dialer: dialer, drainCutShort: func() {
		// The acknowledgements come as the wait ends.
		if err := p.mover.Quiesce(context.Background()); err != nil {
			t.Errorf("quiesce: %v", err)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- p.Run(rctx, 30*time.Second) }()
	defer func() { stop(); <-ran }()
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(p.Status()) })
	vol := cfg.VolumeNames()[0]
	for i := range 8 {
		if err := p.Write(context.Background(), vol, make([]byte, 64<<10), int64(i)*(64<<10)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("stopping: the primary is stopping"))
	err = pairOps{p}.Suspend(ctx, vol, true)
	if err != nil {
		t.Fatalf("suspend --drain cut short as everything was acknowledged: %v", err)
	}
	for _, pr := range p.pairs.Pairs() {
		if pr.Volume == vol && pr.State != pair.Suspended {
			t.Errorf("%s answered suspended, but is %s", vol, pr.State)
		}
	}
	if strings.Contains(p.Status().LastError, "0 bytes") {
		t.Errorf("last error: %s", p.Status().LastError)
	}
}
