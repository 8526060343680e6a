package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testenv"
)

// TestDaemonsPairOperationsReachThePromotedSite: after a failover (kill -9
// of the primary, recover and promote at the secondary, run as the primary
// of the reverse direction), the pair operations run with the session's
// config, which still names the old primary, reach the promoted site, and
// say so: with the old primary gone, pair delete ends a pair there; once
// the old primary rejoined as its secondary, pair suspend and pair rate
// act there, and the rejoined site is left as it was.
func TestDaemonsPairOperationsReachThePromotedSite(t *testing.T) {
	t.Parallel()
	const token = "e2e-pairpromoted-token"
	link := testenv.FreeAddr(t)
	s := newSession(t, sessionOpts{name: "e2e-pairpromoted", volSize: 4 * config.MiB, token: token, edit: func(c *config.Config) {
		c.Primary.Listen, c.Primary.Journal = link, filepath.Join(c.Dir, "primary", "journal")
	}})
	s.start()
	s.prim.kill()
	s.waitPrimaryGone()
	s.stopSecondary()
	prom := s.recoverAndPromote()
	promoted := "the promoted site at " + s.cfg.Secondary.Control
	state := func(vol string) string {
		for _, v := range s.secondaryStatus().Volumes {
			if v.Name == vol {
				return v.State
			}
		}
		return ""
	}

	// The old primary gone: nothing answers at the config's primary.
	code, out, errs := runDuplex(t, "pair", "delete", "vol4", "--config", s.path)
	if code != 0 || !strings.Contains(out, promoted) || !strings.Contains(out, "vol4: no longer a pair") {
		t.Fatalf("pair delete vol4, the old primary gone: exit %d, stdout %q, stderr %q; want vol4 deleted by the promoted site, named", code, out, errs)
	}
	if got := state("vol4"); got != "" {
		t.Fatalf("vol4 at the promoted site after pair delete: %q, want no longer a pair", got)
	}

	// The old primary rejoins the promoted site as its secondary.
	if code, out, errs := runDuplex(t, "rejoin", "--config", s.path); code != 0 {
		t.Fatalf("rejoin exited %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	rej := startDaemon(t, "rejoin", s.path, filepath.Join(s.dir, "rejoin.log"), "--yes")
	rej.waitStarted()
	rej.waitReady(s.cfg.Primary.Control)
	eventually(t, time.Minute, "the rejoined old primary to answer as the promoted site's secondary", func() bool {
		st, err := fetchStatus(s.cfg.Primary.Control)
		return err == nil && st.Starting == nil && st.Role == "secondary" && st.PromotedAt != ""
	})
	eventually(t, time.Minute, "the rejoin to resume vol1 at the promoted site", func() bool {
		st := state("vol1")
		return st == "pending" || st == "duplex"
	})
	code, out, errs = runDuplex(t, "pair", "suspend", "vol1", "--config", s.path)
	if code != 0 || !strings.Contains(out, promoted) || !strings.Contains(out, "answers as the secondary") {
		t.Fatalf("pair suspend vol1, the old primary rejoined: exit %d, stdout %q, stderr %q; want it taken by the promoted site, named", code, out, errs)
	}
	eventually(t, 30*time.Second, "vol1 suspended at the promoted site", func() bool { return state("vol1") == "suspended" })
	code, out, errs = runDuplex(t, "pair", "rate", "--copy", "50MiB", "--config", s.path)
	if code != 0 || !strings.Contains(out, promoted) || !strings.Contains(out, "copy rate limit: 50.0 MiB/s") {
		t.Fatalf("pair rate --copy 50MiB, the old primary rejoined: exit %d, stdout %q, stderr %q; want the promoted site's limit set", code, out, errs)
	}
	if st := s.secondaryStatus(); st.CopyRateLimit == nil || *st.CopyRateLimit != 50<<20 {
		t.Errorf("the promoted site's copy rate limit after pair rate: %v, want 50 MiB/s", st.CopyRateLimit)
	}
	if st, err := fetchStatus(s.cfg.Primary.Control); err != nil || st.Role != "secondary" {
		t.Errorf("the rejoined old primary after the operations: %v, role %q; want it still the secondary", err, st.Role)
	}
	// The promoted site first: it ships what it holds (vol1's suspension)
	// to the rejoined site, which then stops as a secondary does.
	if code := prom.stop(); code != 0 {
		t.Errorf("the promoted site exited %d after SIGTERM, want 0", code)
	}
	if code := rej.stop(); code != 0 {
		t.Errorf("the rejoined old primary exited %d after SIGTERM, want 0", code)
	}
}
