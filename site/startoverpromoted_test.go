package site

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testenv"
	"duplex/transport"
)

// TestASecondaryStartedOverARunningPromotedSiteSaysItWasPromoted: a
// secondary started by mistake at a site whose promoted site runs (the
// promoted site, and the primary of the reverse direction, both on the
// secondary's control address, which a secondary binds right after its
// lock) is refused saying that the site was promoted and what serves its
// volumes, not that its control address is in use: the operator learns
// what is going on, whichever way the secondary is started.
func TestASecondaryStartedOverARunningPromotedSiteSaysItWasPromoted(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name string
		cfg  func(*testing.T) *config.Config
		run  func(*testing.T, *config.Config)
	}{
		{"promoted", linkConfig, func(t *testing.T, cfg *config.Config) {
			p, err := OpenPromoted(cfg, quiet, PromotedOptions{})
			if err != nil {
				t.Fatal(err)
			}
			runUntil(t, func(ctx context.Context) { p.Run(ctx) })
		}},
		{"reverse primary", rejoinConfig, func(t *testing.T, cfg *config.Config) {
			p, err := OpenReversePrimary(cfg, quiet, linkOptions(transport.NewMemNetwork(2, transport.Faults{})))
			if err != nil {
				t.Fatal(err)
			}
			runUntil(t, func(ctx context.Context) { p.Run(ctx, time.Second) })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg(t)
			cfg.Secondary.NBD, cfg.Secondary.Control = "127.0.0.1:0", testenv.FreeAddr(t)
			firstStart(t, cfg)
			if _, _, _, err := Promote(context.Background(), cfg, quiet, nil); err != nil {
				t.Fatal(err)
			}
			tc.run(t, cfg)
			check := func(how string, s *Secondary, err error) {
				t.Helper()
				if err == nil {
					s.Close()
					t.Fatalf("%s: a secondary opened over the running promoted site", how)
				}
				if !strings.Contains(err.Error(), "this site was promoted at") || strings.Contains(err.Error(), "address already in use") {
					t.Errorf("%s: %v; want the refusal that says the site was promoted, not the address in use", how, err)
				}
			}
			s, err := OpenSecondary(cfg, quiet, SecondaryOptions{})
			check("OpenSecondary", s, err)
			s, err = RunSecondary(context.Background(), cfg, quiet, SecondaryOptions{}, DiskRetry{}, nil)
			check("RunSecondary", s, err)
		})
	}
}

// TestAPrimaryStartedOverItsRunningRejoinedSecondarySaysItRejoined: the
// reverse: at the old primary that rejoined the promoted site, running
// as its secondary (duplex rejoin --yes) on the [primary] control
// address, a duplex primary started by mistake is refused saying that
// the site rejoined the promoted site, not that its control address is
// in use.
func TestAPrimaryStartedOverItsRunningRejoinedSecondarySaysItRejoined(t *testing.T) {
	cfg := rejoinConfig(t)
	quiet := slog.New(slog.DiscardHandler)
	_, _, prim, stopSec, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{})
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(prim.Status()) })
	stopPrim()
	stopSec()
	if _, _, _, err := Promote(context.Background(), cfg, quiet, nil); err != nil {
		t.Fatal(err)
	}
	rev := transport.NewMemNetwork(2, transport.Faults{})
	b, _ := openReversed(t, cfg, quiet, rev)
	cfg.Primary.Control = testenv.FreeAddr(t)
	_, _, a := rejoinAt(t, cfg, quiet, b, rev, SecondaryOptions{})
	if a.ControlAddr() != cfg.Primary.Control {
		t.Fatalf("the rejoined old primary serves control on %q, not on [primary] control %s", a.ControlAddr(), cfg.Primary.Control)
	}
	p, err := OpenPrimary(cfg, quiet, PrimaryOptions{})
	if err == nil {
		p.actlog.Close()
		p.close()
		t.Fatal("a primary opened at the old primary whose rejoined secondary runs")
	}
	if !strings.Contains(err.Error(), "rejoined the promoted site") || strings.Contains(err.Error(), "address already in use") {
		t.Errorf("%v; want the refusal that says the site rejoined the promoted site, not the address in use", err)
	}
}
