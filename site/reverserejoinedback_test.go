package site

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReversePrimaryRefusedWhileRejoiningBack: a promoted site whose
// rejoin back began (the record written, the promotion not retired yet: a
// kill -9 of duplex rejoin --yes between the two) must not serve its
// volumes read-write again when its old duplex promote is started: the old
// primary is the session's primary, and the rejoin discards what they take.
func TestReversePrimaryRefusedWhileRejoiningBack(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Primary.Listen, cfg.Primary.Journal = "127.0.0.1:0", filepath.Join(cfg.Dir, "primary", "journal")
	cfg.Secondary.NBD = "127.0.0.1:0"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	firstStart(t, cfg)
	pr, _, _, err := Promote(context.Background(), cfg, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := Rejoined{Session: cfg.Session, At: time.Now().UnixNano(), PromotedAt: "then", ConsistencyTime: pr.ConsistencyTime,
		Generation: "00000000000000b1", Discarded: map[string][]byte{}, dir: RejoinBackDir(cfg)}
	if err := writeRejoin(cfg, r); err != nil {
		t.Fatal(err)
	}
	b, err := OpenReversePrimary(cfg, quiet, PrimaryOptions{})
	if err == nil {
		b.close()
		t.Fatal("the promoted site rejoining back opened as the primary of the reverse direction")
	}
	if !strings.Contains(err.Error(), "duplex rejoin") {
		t.Errorf("the refusal does not name duplex rejoin: %v", err)
	}
}
