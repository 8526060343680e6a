package site

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"duplex/failover"
	"duplex/transport"
)

// An old primary, rejoined, whose promotion back (a switchover at the
// promoted site) was recorded, and which was killed before it served:
// its next start as the primary makes its pair state from the promotion
// (every pair suspended as of its consistency time, the promotion's
// generation), drops the rejoin and the reverse role's promotion, and says
// it is the session's primary since then; a start after that serves the
// same.
func TestPrimaryStartCompletesAFailBack(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Primary.Listen, cfg.Primary.Journal = "127.0.0.1:0", filepath.Join(cfg.Dir, "primary", "journal")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	startedAndStopped(t, cfg, quiet)
	dir := PairStateDir(cfg)
	r := Rejoined{Session: cfg.Session, At: time.Now().UnixNano(), PromotedAt: "then", Generation: transport.NewGeneration().String(), dir: dir}
	if err := writeRejoin(cfg, r); err != nil {
		t.Fatal(err)
	}
	if err := failover.WriteSwitchover(nil, dir, failover.Switchover{Session: cfg.Session, State: failover.SwitchoverDone, At: 1}); err != nil {
		t.Fatal(err)
	}
	rev, err := cfg.Reversed()
	if err != nil {
		t.Fatal(err)
	}
	// Rejoined and not promoted back: refused, as a rejoined site is.
	if _, err := OpenPrimary(cfg, quiet, PrimaryOptions{}); err == nil {
		t.Fatal("a rejoined old primary started as the primary")
	}
	pr := failover.Promotion{Session: cfg.Session, At: time.Now().UnixNano(), ConsistencyTime: time.Now().Add(time.Hour).UnixNano(), Group: 42,
		Generation: transport.NewGeneration(), Follows: transport.NewGeneration()}
	if err := failover.WritePromotion(nil, PromotedDir(rev), pr); err != nil {
		t.Fatal(err)
	}
	for run := range 2 {
		p, err := OpenPrimary(cfg, quiet, PrimaryOptions{})
		if err != nil {
			t.Fatalf("start %d after the promotion back: %v", run, err)
		}
		st := p.Status()
		if st.Role != "primary" || st.PrimarySite != "primary" || st.PrimarySince == "" || st.Generation != pr.Generation.String() {
			t.Errorf("start %d: role %q, primary_site %q since %q, generation %s; want primary since the promotion, generation %s",
				run, st.Role, st.PrimarySite, st.PrimarySince, st.Generation, pr.Generation)
		}
		for _, v := range st.Volumes {
			if v.State != "suspended" {
				t.Errorf("start %d: %s is %s, want suspended until the other site rejoins", run, v.Name, v.State)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		p.Run(ctx, 0)
		if _, err := readRejoin(nil, dir); !errors.Is(err, ErrNotRejoined) {
			t.Errorf("start %d: the rejoin record stays: %v", run, err)
		}
		if _, err := failover.ReadSwitchover(nil, dir); !errors.Is(err, failover.ErrNoSwitchover) {
			t.Errorf("start %d: the switchover record stays: %v", run, err)
		}
		if _, err := os.Stat(PromotedDir(rev)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("start %d: the reverse role's promotion stays: %v", run, err)
		}
	}
}
