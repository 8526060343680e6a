package site

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"duplex/transport"
)

// A site that rejoined back (the secondary again after a round trip) keeps
// its rejoin record beside its state file, which duplex rejoin reads first.
// Promoted again on a second failover, the record is spent: left, a later
// duplex rejoin there takes it for the rejoin under way, retires the new
// promotion and runs as a secondary of the old generation, copying nothing.
func TestPromoteAgainDropsTheRejoinBackRecord(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Secondary.NBD = "127.0.0.1:0"
	firstStart(t, cfg)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := OpenSecondary(cfg, quiet, SecondaryOptions{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	r := Rejoined{Session: cfg.Session, At: time.Now().UnixNano(), PromotedAt: "then", Generation: transport.NewGeneration().String(),
		Delivered: true, dir: RejoinBackDir(cfg)}
	if err := writeRejoin(cfg, r); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := Promote(context.Background(), cfg, quiet, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadRejoinBack(cfg); !errors.Is(err, ErrNotRejoined) {
		t.Errorf("after the second promotion the rejoin back of the first round trip stays (%+v, %v)", got, err)
	}
}
