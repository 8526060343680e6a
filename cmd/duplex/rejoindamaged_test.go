package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/site"
	"duplex/transport"
)

// damagedContents are what a record may hold instead of what its writer
// wrote: cut short, bytes of something else, JSON of another shape or
// types, and values that decode to the zero record.
var damagedContents = map[string]string{
	"cut short":   `{"session":"startup","promoted_at_ns":12`,
	"garbage":     "\x89PNG\r\n\x1a\n not a record",
	"zeros":       "\x00\x00\x00\x00\x00\x00",
	"wrong types": `{"session": 7, "promoted_at_ns": "x", "generation": [1]}`,
	"null":        "null\n",
	"{}":          "{}\n",
	"empty":       "",
}

// TestRejoinRefusesADamagedPromotionHandedBack: at the rejoined old
// primary, a damaged record of the promotion the other site's switchover
// handed back is refused, naming the file and what to do. Before, it read
// as "not handed back", and duplex rejoin said this site runs as the
// promoted site's secondary.
func TestRejoinRefusesADamagedPromotionHandedBack(t *testing.T) {
	for name, content := range damagedContents {
		t.Run(name, func(t *testing.T) {
			path, cfg := rejoinedOldPrimary(t)
			rev, err := cfg.Reversed()
			if err != nil {
				t.Fatal(err)
			}
			rec := filepath.Join(site.PromotedDir(rev), "promotion.json")
			if err := os.MkdirAll(filepath.Dir(rec), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(rec, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			var out, errb strings.Builder
			code := run(t.Context(), []string{"rejoin", "--config", path, "--log-level", "error"}, &out, &errb)
			if code != exitFailure || !strings.Contains(errb.String(), rec+" is damaged") || !strings.Contains(errb.String(), "put back a copy") {
				t.Errorf("duplex rejoin with %s %s: exit %d, stdout %q, stderr %q; want exit 1 naming the file as damaged and what to do",
					rec, name, code, out.String(), errb.String())
			}
		})
	}
}

// TestRejoinRefusesADamagedReverseGeneration: at a promoted site that ran
// as the primary of the reverse direction, a damaged data generation of
// that pair state is refused, naming the file and what to do, whether the
// old primary answers or not. Before, it read as "the old primary did not
// take the session back", and the rejoin went on as the old primary's.
func TestRejoinRefusesADamagedReverseGeneration(t *testing.T) {
	for _, answers := range []bool{true, false} {
		for name, content := range damagedContents {
			if !answers {
				name += ", the old primary not answering"
			}
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				c := startupSession(dir)
				c.Primary.Listen, c.Primary.Journal = "127.0.0.1:0", filepath.Join(dir, "primary", "journal")
				if answers {
					// The old primary, which took the session back.
					srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						json.NewEncoder(w).Encode(control.Changes{PromotedAt: "then", Generation: transport.NewGeneration().String(),
							Follows: transport.NewGeneration().String(), Volumes: map[string][]byte{}})
					}))
					t.Cleanup(srv.Close)
					c.Primary.Control = strings.TrimPrefix(srv.URL, "http://")
				}
				path := writeSessionConfig(t, dir, c)
				cfg, err := config.Load(path)
				if err != nil {
					t.Fatal(err)
				}
				rev := site.ReverseDir(cfg)
				if err := os.MkdirAll(rev, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(rev, "pairs.json"), []byte(`{"clean":true,"pairs":{}}`+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				gen := filepath.Join(rev, "generation.json")
				if err := os.WriteFile(gen, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				var out, errb strings.Builder
				code := run(t.Context(), []string{"rejoin", "--config", path, "--log-level", "error"}, &out, &errb)
				if code != exitFailure || !strings.Contains(errb.String(), gen+" is damaged") || !strings.Contains(errb.String(), "put back a copy") {
					t.Errorf("duplex rejoin with %s %s (the old primary answering: %v): exit %d, stdout %q, stderr %q; "+
						"want exit 1 naming the file as damaged and what to do", gen, name, answers, code, out.String(), errb.String())
				}
			})
		}
	}
}

// TestPromoteRefusesADamagedRecordOfTheWayBack: duplex promote at the old
// primary reads its rejoin record, the promotion of a failover back in its
// pair state, and the promotion of its own site as the secondary: each
// damaged is refused, naming the file and what to do. Before, each read as
// absent, and promote went on as at the secondary's site.
func TestPromoteRefusesADamagedRecordOfTheWayBack(t *testing.T) {
	for _, which := range []string{"rejoin record", "promotion of a failover back", "promotion as the secondary"} {
		for name, content := range damagedContents {
			t.Run(which+", "+name, func(t *testing.T) {
				path, cfg := rejoinedOldPrimary(t)
				var rec string
				switch which {
				case "rejoin record":
					rec = filepath.Join(site.PairStateDir(cfg), "rejoin.json")
				case "promotion of a failover back":
					if err := os.Remove(filepath.Join(site.PairStateDir(cfg), "rejoin.json")); err != nil {
						t.Fatal(err)
					}
					rec = filepath.Join(site.PairStateDir(cfg), "promotion.json")
				default:
					rec = filepath.Join(site.PromotedDir(cfg), "promotion.json")
				}
				if err := os.MkdirAll(filepath.Dir(rec), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(rec, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				var out, errb strings.Builder
				code := run(ctx, []string{"promote", "--config", path, "--log-level", "error"}, &out, &errb)
				if code != exitFailure || !strings.Contains(errb.String(), rec+" is damaged") || !strings.Contains(errb.String(), "put back a copy") {
					t.Errorf("duplex promote with %s %s: exit %d, stdout %q, stderr %q; want exit 1 naming the file as damaged and what to do",
						rec, name, code, out.String(), errb.String())
				}
			})
		}
	}
}

// TestPromoteOfTheSecondaryPastTheOldPrimarysDamagedRecords: with both
// sites in one directory, duplex promote at the secondary's site reads the
// old primary's rejoin record and promotion of a failover back, where what
// they hold no longer decides anything: a promoted site is served again
// whatever the rejoin record says, and a site that ran as the secondary,
// or was promoted, is promoted whatever the promotion of a failover back
// says. There promote goes on however damaged they are, as it did whatever
// they held. Refused, the secondary could not take over from an old
// primary whose disk failed.
func TestPromoteOfTheSecondaryPastTheOldPrimarysDamagedRecords(t *testing.T) {
	for _, here := range []string{"a secondary", "a promoted site"} {
		for _, rec := range []string{"rejoin.json", "promotion.json"} {
			if here == "a secondary" && rec == "rejoin.json" {
				// Whole, it makes promote fail over back: damaged, it is
				// refused (TestPromoteRefusesADamagedRecordOfTheWayBack).
				continue
			}
			for name, content := range damagedContents {
				if name != "cut short" && name != "{}" && name != "empty" {
					continue // each promote serves: a few damages say it
				}
				t.Run(here+", "+rec+" "+name, func(t *testing.T) {
					dir := t.TempDir()
					path := writeSessionConfig(t, dir, startupSession(dir))
					cfg, err := config.Load(path)
					if err != nil {
						t.Fatal(err)
					}
					if here == "a promoted site" {
						startedOnce(t, cfg)
						if _, _, code := promoteUntil(t, path, "the first duplex promote", "read-write"); code >= 0 {
							t.Fatalf("the first duplex promote exited %d", code)
						}
					} else {
						s, err := site.OpenSecondary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), site.SecondaryOptions{})
						if err != nil {
							t.Fatal(err)
						}
						s.Close()
					}
					if err := os.MkdirAll(site.PairStateDir(cfg), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(site.PairStateDir(cfg), rec), []byte(content), 0o644); err != nil {
						t.Fatal(err)
					}
					out, errb, code := promoteUntil(t, path, "duplex promote at "+here, "read-write")
					if code >= 0 {
						t.Errorf("duplex promote at %s with the old primary's %s %s: exit %d, stdout %q, stderr %q; want it served",
							here, rec, name, code, out, errb)
					}
				})
			}
		}
	}
}
