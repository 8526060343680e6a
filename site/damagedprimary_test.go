package site

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/config"
	"duplex/failover"
)

// startedAndStopped starts the primary of cfg and stops it at once, for
// its pair state directory to hold what a first run writes.
func startedAndStopped(t *testing.T, cfg *config.Config, log *slog.Logger) {
	t.Helper()
	p, err := OpenPrimary(cfg, log, PrimaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stopAtOnce(p)
}

// stopAtOnce runs p with a context that has ended: it stops as it starts.
func stopAtOnce(p *Primary) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.Run(ctx, 0)
}

// TestADamagedRecordOfAPrimaryStopsItsStart: a primary whose pair state,
// timer lease, data generation, switchover record or rejoin record is
// damaged refuses to start, naming the
// file, saying it is damaged and what to do; none is taken as missing
// (pairs that start a full initial copy again, a deleted pair added back,
// a lease that no longer keeps the stamps above those handed out before,
// a new generation the secondary refuses), and none panics.
func TestADamagedRecordOfAPrimaryStopsItsStart(t *testing.T) {
	cfg := linkConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	startedAndStopped(t, cfg, quiet)
	dir := PairStateDir(cfg)
	all := append(damages, struct {
		name  string
		spoil func(b []byte) []byte
	}{"a pair that is null", func([]byte) []byte { return []byte(`{"clean": true, "pairs": [null]}`) }})
	// Written by a switchover or a rejoin only: each damage is refused as
	// the record would be.
	written := map[string][]byte{
		failover.SwitchoverFile: []byte(`{"session":"demo","state":"pending","switched_over_at_ns":1}`),
		rejoinFile:              []byte(`{"session":"demo","rejoined_at_ns":1,"promoted_at":"then","generation":"1"}`),
	}
	for _, name := range []string{"pairs.json", "timer.json", "generation.json", failover.SwitchoverFile, rejoinFile} {
		path := filepath.Join(dir, name)
		b, ok := written[name]
		if !ok {
			var err error
			if b, err = os.ReadFile(path); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range all {
			t.Run(name+"/"+d.name, func(t *testing.T) {
				if err := os.WriteFile(path, d.spoil(b), 0o600); err != nil {
					t.Fatal(err)
				}
				defer func() {
					if ok {
						os.Remove(path)
					} else {
						os.WriteFile(path, b, 0o600)
					}
				}()
				var (
					p   *Primary
					err error
				)
				func() {
					defer func() {
						if r := recover(); r != nil {
							t.Fatalf("the primary's start panics: %v", r)
						}
					}()
					p, err = OpenPrimary(cfg, quiet, PrimaryOptions{})
				}()
				if err == nil {
					stopAtOnce(p)
					t.Fatalf("the primary started with %s %s", path, d.name)
				}
				t.Logf("%v", err)
				for _, w := range []string{path, "damaged", "put back"} {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("the error does not say %q", w)
					}
				}
			})
		}
	}
}
