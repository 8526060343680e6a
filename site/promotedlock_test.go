package site

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

// TestSecondPromotedSiteTouchesNoStateFile: a second promoted site on the
// config of a running one (duplex promote run again where no control
// address tells it the first one serves) must be refused before it writes
// any file of the promotion directory, as a second primary is (the
// pair-state LOCK). The running site's timer mark is its lease: a second
// process that rewrites it (at open, a mark ahead of the clock; at its
// close, the last stamp it read plus one) can leave on disk a mark below
// stamps the running site has handed out since it renewed, and a kill -9
// of the running site then restarts its timer below them.
func TestSecondPromotedSiteTouchesNoStateFile(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Secondary.NBD = "127.0.0.1:0"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	firstStart(t, cfg)
	if _, _, _, err := Promote(context.Background(), cfg, quiet, nil); err != nil {
		t.Fatal(err)
	}
	first, err := OpenPromoted(cfg, quiet, PromotedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer first.close()
	first.timer.Now()
	dir := PromotedDir(cfg)
	before := snapshotDir(t, dir)
	// Modification times have a granularity: a rewrite must show.
	time.Sleep(20 * time.Millisecond)

	second, err := OpenPromoted(cfg, quiet, PromotedOptions{})
	if err == nil {
		second.close()
		t.Fatal("a second promoted site opened the promotion directory of a running one")
	}
	t.Logf("refused: %v", err)
	after := snapshotDir(t, dir)
	for name, was := range before {
		if now, ok := after[name]; !ok {
			t.Errorf("%s was removed", name)
		} else if now != was {
			t.Errorf("%s was written by the refused second site: %s, then %s", name, was, now)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s was created", name)
		}
	}
}
