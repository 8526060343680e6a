package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/site"
)

// TestARefusedFreshPrimaryStopsAtOnceOnSIGTERM: a primary the secondary
// refuses for its copies (a new pair state, no consent) can ship nothing
// until the operator acts, however long it waits: the refusal is the
// secondary's answer, not a link that may come back. SIGTERM stops it
// once its next try is refused too (before: only once the link had been
// down for the 10 s patience of a link that may come back), its last
// words saying that the secondary refused it and why. Its exit status is
// 1, as for any stop with updates not at the secondary (an unreachable
// one's): what it was run for is not done, and the operator must act.
// Nothing it acknowledged is lost: given consent, the next run copies
// every volume whole, the write made while refused with them.
func TestARefusedFreshPrimaryStopsAtOnceOnSIGTERM(t *testing.T) {
	s := newSession(t, sessionOpts{volSize: 8 * config.MiB})
	s.start()
	c := dialNBD(t, s.cfg.Primary.NBD, "vol1")
	if err := c.WriteAt(bytes.Repeat([]byte{0x5a}, 64<<10), 1<<20); err != nil {
		t.Fatal(err)
	}
	c.Close()
	s.drainPrimary()
	// The primary's disks replaced: no state directory, new images.
	if err := os.RemoveAll(site.PairStateDir(s.cfg)); err != nil {
		t.Fatal(err)
	}
	for _, name := range s.cfg.VolumeNames() {
		p, _ := s.volumePaths(name)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	began := time.Now()
	s.prim = startDaemon(t, "primary", s.path, filepath.Join(s.dir, "primary-fresh.log"))
	s.prim.waitStarted()
	s.prim.waitReady(s.cfg.Primary.Control)
	eventually(t, 30*time.Second, "the secondary to refuse the fresh primary", func() bool {
		at, _ := time.Parse(time.RFC3339Nano, s.secondaryStatus().LastErrorAt)
		return at.After(began) || s.primaryStatus().Link == "connected"
	})
	st := s.primaryStatus()
	gen := regexp.MustCompile(`--overwrite-secondary ([0-9a-f]{16})`).FindStringSubmatch(st.LastError)
	if st.Link == "connected" || gen == nil {
		t.Fatalf("the fresh primary is not refused for the secondary's copies: link %s, last error %q", st.Link, st.LastError)
	}
	// A write acknowledged while refused: the next run must still copy it.
	c = dialNBD(t, s.cfg.Primary.NBD, "vol2")
	if err := c.WriteAt(bytes.Repeat([]byte{7}, 4096), 2<<20); err != nil {
		t.Fatal(err)
	}
	c.Close()
	stopped := time.Now()
	code := s.prim.stop()
	took := time.Since(stopped)
	t.Logf("the refused primary exited %d, %s after SIGTERM", code, took.Round(time.Millisecond))
	log := s.prim.log()
	if took > 5*time.Second {
		t.Errorf("the refused primary took %s to stop, want it at once: nothing it holds can be shipped before the operator acts\n%s",
			took.Round(time.Millisecond), logTail(log, 3000))
	}
	if code != 1 {
		t.Errorf("the refused primary exited %d on SIGTERM, want 1: it stopped with updates not at the secondary\n%s", code, logTail(log, 3000))
	}
	last := log[max(strings.LastIndex(log, "duplex: "), 0):]
	t.Logf("its last words: %s", last)
	for _, want := range []string{"secondary refused the session", "--overwrite-secondary " + gen[1], "record sets not yet acknowledged"} {
		if !strings.Contains(last, want) {
			t.Errorf("the refused primary's last words do not say %q:\n%s", want, logTail(log, 3000))
		}
	}

	// Consent given: every volume copied whole, vol2's write with them.
	s.prim = startDaemon(t, "primary", s.path, filepath.Join(s.dir, "primary-consent.log"), "--overwrite-secondary", gen[1])
	s.prim.waitStarted()
	s.prim.waitReady(s.cfg.Primary.Control)
	s.waitLinked()
	s.drainPrimary()
	s.stopSecondary()
	s.assertImagesEqual()
}
