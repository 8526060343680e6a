package e2e

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testenv"
)

// TestDaemonsPairOperationIsNotSentPastAPausedPrimary: the primary is
// paused (kill -STOP: its host slow or hung, its sockets still open, the
// kernel taking connections that nothing answers), and the secondary is
// recovered and promoted meanwhile. A pair operation run with the
// session's config must not take the paused primary for gone: once it
// goes on, it runs as a primary (a split brain), and the operation belongs
// to whichever site the operator names. pair delete is refused within the
// status wait, naming the paused primary's address and --addr, and the
// pair is left as it is at the promoted site; with --addr naming the
// promoted site it is deleted there.
func TestDaemonsPairOperationIsNotSentPastAPausedPrimary(t *testing.T) {
	t.Parallel()
	const token = "e2e-pairpaused-token"
	link := testenv.FreeAddr(t)
	s := newSession(t, sessionOpts{name: "e2e-pairpaused", volSize: 4 * config.MiB, token: token, edit: func(c *config.Config) {
		c.Primary.Listen, c.Primary.Journal = link, filepath.Join(c.Dir, "primary", "journal")
	}})
	s.start()
	if err := s.prim.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Killed paused at the test's end (SIGKILL ends a stopped process),
	// or let go on first where the test ends early.
	t.Cleanup(func() { s.prim.cmd.Process.Signal(syscall.SIGCONT) })
	s.stopSecondary()
	prom := s.recoverAndPromote()
	state := func(vol string) string {
		for _, v := range s.secondaryStatus().Volumes {
			if v.Name == vol {
				return v.State
			}
		}
		return ""
	}
	if got := state("vol4"); got == "" {
		t.Fatalf("vol4 at the promoted site: not a pair before the operation")
	}

	start := time.Now()
	code, out, errs := runDuplex(t, "pair", "delete", "vol4", "--config", s.path)
	took := time.Since(start)
	if code == 0 || strings.Contains(out, "promoted site at") || !strings.Contains(errs, s.cfg.Primary.Control) ||
		!strings.Contains(errs, "did not answer within") || !strings.Contains(errs, "--addr") {
		t.Errorf("pair delete vol4, the primary paused: exit %d, stdout %q, stderr %q; want it refused: the config's primary %s did not answer, name the site with --addr",
			code, out, errs, s.cfg.Primary.Control)
	}
	if took > 30*time.Second {
		t.Errorf("pair delete vol4 refused after %v, want within the status wait", took)
	}
	if got := state("vol4"); got == "" {
		t.Fatalf("vol4 at the promoted site after the refused pair delete: no longer a pair")
	}

	code, out, errs = runDuplex(t, "pair", "delete", "vol4", "--config", s.path, "--addr", s.cfg.Secondary.Control)
	if code != 0 || !strings.Contains(out, "vol4: no longer a pair") {
		t.Fatalf("pair delete vol4 --addr %s: exit %d, stdout %q, stderr %q; want vol4 deleted at the promoted site", s.cfg.Secondary.Control, code, out, errs)
	}
	if got := state("vol4"); got != "" {
		t.Errorf("vol4 at the promoted site after pair delete --addr: %q, want no longer a pair", got)
	}
	prom.kill()
}
