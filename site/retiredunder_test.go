package site

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/disk"
	"duplex/failover"
)

// The starts of a promoted site read its promotion, and the reverse
// direction's primary the rejoin back too, before their LOCK: a rejoin
// back that records itself and retires the promotion meanwhile (duplex
// rejoin --yes, run while duplex promote starts) must refuse the start,
// which would serve the volumes read-write beside the session's
// secondary that the site has become, and leave no pair state of the
// reverse direction that a later promotion would take for its own.

// promotedReversing promotes the secondary, started once, of a new link
// config whose promoted site runs as the primary of the reverse direction.
func promotedReversing(t *testing.T) (*config.Config, failover.Promotion) {
	t.Helper()
	cfg := linkConfig(t)
	cfg.Primary.Listen, cfg.Primary.Journal = "127.0.0.1:0", filepath.Join(cfg.Dir, "primary", "journal")
	cfg.Secondary.NBD = "127.0.0.1:0"
	firstStart(t, cfg)
	pr, _, _, err := Promote(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, pr
}

// rejoinBackNow records a rejoin back at the promoted site of cfg and
// retires its promotion, as duplex rejoin --yes does.
func rejoinBackNow(t *testing.T, cfg *config.Config, pr failover.Promotion) error {
	t.Helper()
	r := Rejoined{Session: cfg.Session, At: time.Now().UnixNano(), PromotedAt: "then", ConsistencyTime: pr.ConsistencyTime,
		Generation: "00000000000000b1", Discarded: map[string][]byte{}, dir: RejoinBackDir(cfg)}
	if err := writeRejoin(cfg, r); err != nil {
		t.Fatal(err)
	}
	return RetireRejoinedBack(cfg)
}

// noReversePairState fails t if the promoted site of cfg holds a pair
// state of the reverse direction once its promotion is retired.
func noReversePairState(t *testing.T, cfg *config.Config) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(ReverseDir(cfg), "pairs.json")); err == nil {
		t.Error("the refused start left a pair state of the reverse direction behind, with no promotion")
	}
	if _, err := failover.ReadPromotion(nil, PromotedDir(cfg)); !errors.Is(err, failover.ErrNotPromoted) {
		t.Errorf("the promotion after its retirement: %v, want ErrNotPromoted", err)
	}
}

// refusedAsRejoinedBack fails t unless the refusal of a start whose
// promotion a rejoin back retired says what the site is now, the session's
// secondary, run by duplex rejoin --yes: a new promotion (duplex promote)
// would serve the volumes read-write beside the session's primary, and
// fence it.
func refusedAsRejoinedBack(t *testing.T, err error) {
	t.Helper()
	if !strings.Contains(err.Error(), "duplex rejoin --yes") || strings.Contains(err.Error(), "duplex promote") {
		t.Errorf("the refusal does not say the site rejoined the session's primary and runs by duplex rejoin --yes: %v", err)
	}
	if w := wrappedTwice(err.Error()); w != "" {
		t.Errorf("the refusal wraps %q twice: %v", w, err)
	}
}

// wrappedTwice returns the context ("promoted: ") that msg names twice in
// a row, as two layers that each wrap an error with the same word write
// it, or "" if none.
func wrappedTwice(msg string) string {
	for rest := msg; ; {
		i := strings.Index(rest, ": ")
		if i < 0 {
			return ""
		}
		word := rest[strings.LastIndexAny(rest[:i], " (\"")+1 : i+2]
		if strings.HasPrefix(rest[i+2:], word) {
			return word
		}
		rest = rest[i+2:]
	}
}

// TestAReversePrimaryWhosePromotionIsRetiredBeforeItsLockIsRefused: the
// promotion is retired once the reverse direction's pair state is made,
// before its LOCK is taken.
func TestAReversePrimaryWhosePromotionIsRetiredBeforeItsLockIsRefused(t *testing.T) {
	cfg, pr := promotedReversing(t)
	var retired error
	p, err := OpenReversePrimary(cfg, slog.New(slog.DiscardHandler), PrimaryOptions{beforeStateLock: func() { retired = rejoinBackNow(t, cfg, pr) }})
	if retired != nil {
		t.Fatalf("the rejoin back's retirement: %v", retired)
	}
	if err == nil {
		p.close()
		t.Fatal("the promoted site opened as the primary of the reverse direction after its promotion was retired")
	}
	t.Logf("refused: %v", err)
	refusedAsRejoinedBack(t, err)
	noReversePairState(t, cfg)
}

// TestAReversePrimaryWhosePromotionIsRetiredWhileItsPairStateIsMadeIsRefused:
// the promotion is retired while the reverse direction's pair state is
// made (its first start), before the changed regions' LOCK is taken.
func TestAReversePrimaryWhosePromotionIsRetiredWhileItsPairStateIsMadeIsRefused(t *testing.T) {
	cfg, pr := promotedReversing(t)
	in := disk.NewInjector(nil)
	hang := make(chan struct{})
	// The changed regions' LOCK: its directory made first.
	in.Inject(disk.Fault{Op: disk.OpCreate, Under: PromotedDir(cfg), Once: true, Hang: hang})
	type opened struct {
		p   *Primary
		err error
	}
	done := make(chan opened, 1)
	go func() {
		p, err := OpenReversePrimary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), PrimaryOptions{FS: in})
		done <- opened{p, err}
	}()
	waitFor(t, 10*time.Second, "the making of the pair state to wait for the changed regions' LOCK", func() bool { return in.Injected(disk.OpCreate) > 0 })
	retired := rejoinBackNow(t, cfg, pr)
	close(hang)
	o := <-done
	if retired != nil {
		t.Fatalf("the rejoin back's retirement: %v", retired)
	}
	if o.err == nil {
		o.p.close()
		t.Fatal("the promoted site opened as the primary of the reverse direction after its promotion was retired")
	}
	t.Logf("refused: %v", o.err)
	refusedAsRejoinedBack(t, o.err)
	noReversePairState(t, cfg)
}

// TestAPromotedSiteWhosePromotionIsRetiredBeforeItsLockIsRefused: the
// promotion is retired once a promoted site has read it, before its LOCK.
func TestAPromotedSiteWhosePromotionIsRetiredBeforeItsLockIsRefused(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Secondary.NBD = "127.0.0.1:0"
	firstStart(t, cfg)
	pr, _, _, err := Promote(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	in := disk.NewInjector(nil)
	hang := make(chan struct{})
	in.Inject(disk.Fault{Op: disk.OpCreate, Under: PromotedDir(cfg), Once: true, Hang: hang})
	type opened struct {
		p   *Promoted
		err error
	}
	done := make(chan opened, 1)
	go func() {
		p, err := OpenPromoted(cfg, slog.New(slog.DiscardHandler), PromotedOptions{FS: in})
		done <- opened{p, err}
	}()
	waitFor(t, 10*time.Second, "the promoted site to wait for its LOCK", func() bool { return in.Injected(disk.OpCreate) > 0 })
	retired := rejoinBackNow(t, cfg, pr)
	close(hang)
	o := <-done
	if retired != nil {
		t.Fatalf("the rejoin back's retirement: %v", retired)
	}
	if o.err == nil {
		o.p.close()
		t.Fatal("the promoted site opened after its promotion was retired")
	}
	t.Logf("refused: %v", o.err)
	refusedAsRejoinedBack(t, o.err)
}

// TestARejoinBacksRetirementIsRefusedWhileThePromotedSiteRuns: the
// retirement of a promotion whose site still runs (it holds the LOCK) is
// refused, and the promotion stays: removed under it, the site went on
// serving the volumes, its pair state gone.
func TestARejoinBacksRetirementIsRefusedWhileThePromotedSiteRuns(t *testing.T) {
	cfg, pr := promotedReversing(t)
	p, err := OpenReversePrimary(cfg, slog.New(slog.DiscardHandler), PrimaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if err := rejoinBackNow(t, cfg, pr); err == nil {
		t.Error("the promotion was retired under its running site")
	} else {
		t.Logf("refused: %v", err)
	}
	if _, err := failover.ReadPromotion(nil, PromotedDir(cfg)); err != nil {
		t.Errorf("the promotion after a refused retirement: %v", err)
	}
}
