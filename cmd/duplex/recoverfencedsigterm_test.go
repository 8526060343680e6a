package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"duplex/secondary"
	"duplex/site"
)

// TestARecoverStoppedWhileStartingAFencedSecondarySaysItIsFenced: duplex
// recover --force, sent SIGTERM while the start of a secondary that an
// earlier recover fenced waits on its disk (its state file a FIFO), stops
// before fencing, as at any secondary; its last words say what is true of
// this one: fenced, by the earlier recover, and refusing its old primary,
// not that it is not fenced and takes its primary again when it restarts.
func TestARecoverStoppedWhileStartingAFencedSecondarySaysItIsFenced(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	path, cfg := recoverSession(t, dir, startupSession(dir))
	if code, out := runDuplex(t, "recover", "--config", path, "--force", "--log-level", "error"); code != exitOK {
		t.Fatalf("the first recover --force exited %d:\n%s", code, out)
	}
	state := site.StatePath(cfg)
	if b, err := os.ReadFile(secondary.IdentityPath(state)); err != nil || !strings.Contains(string(b), `"fenced"`) {
		t.Fatalf("the first recover --force did not fence the site: %s, %v", b, err)
	}
	out := stopWhileStarting(t, cfg, 200*time.Millisecond, "recover", "--config", path, "--force")
	last := out[strings.LastIndex(out, "duplex: ")+1:]
	if !strings.Contains(out, "duplex: ") || !strings.Contains(last, "stopped before fencing") {
		t.Fatalf("recover's last words do not say it stopped before fencing:\n%s", out)
	}
	if strings.Contains(last, "not fenced") || strings.Contains(last, "takes its primary again") {
		t.Errorf("recover's last words say a secondary fenced by an earlier recover is not fenced:\n%s", last)
	}
	if !strings.Contains(last, "fenced by an earlier recover") {
		t.Errorf("recover's last words do not say the secondary is fenced already:\n%s", last)
	}
}
