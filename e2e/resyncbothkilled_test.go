package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"duplex/bench/harness"
	"duplex/control"
	"duplex/internal/testenv"
)

// TestPrefixThroughResyncBothKilled kills both sites in the middle of the
// resync, the primary first. The restarted secondary must hold a prefix of
// the acknowledged writes before the primary is back; once the primary is
// back, the resync it was in must complete (the primary copies what its
// bitmaps and activity log name), the secondary must hold a prefix
// throughout, and both sites end byte-identical: nothing acknowledged is
// lost when both crash during a resync.
func TestPrefixThroughResyncBothKilled(t *testing.T) {
	t.Parallel()
	r := startResync(t, goWriter)
	r.prim.Kill()
	r.sec.Kill()
	t.Logf("both sites killed at %s of the resync", r.progress)
	r.stopWriter()

	restart := func(role, ctl string) *harness.Daemon {
		d := startSite(t, r.bin, role, r.sess, filepath.Join(r.sess.Dir, role+"-2.log"))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := harness.WaitStatus(ctx, d, ctl, func(control.Status) bool { return true }); err != nil {
			t.Fatalf("the restarted %s does not answer: %v", role, err)
		}
		return d
	}
	r.sec = restart("secondary", r.sess.Config.Secondary.Control)
	r.waitSettled()
	img, bad := r.readExports()
	r.check("at the restarted secondary, the primary still down", img, bad)

	r.prim = restart("primary", r.sess.Config.Primary.Control)
	r.waitAll("duplex", 3*time.Minute)
	r.waitSettled()
	img, bad = r.readExports()
	r.check("once the primary is back and every pair duplex", img, bad)

	if code := r.prim.Stop(time.Minute); code != 0 {
		t.Fatalf("primary exited %d after SIGTERM", code)
	}
	r.waitSettled()
	if code := r.sec.Stop(time.Minute); code != 0 {
		t.Fatalf("secondary exited %d after SIGTERM", code)
	}
	pp, sp := r.sess.PrimaryPaths(), r.sess.SecondaryPaths()
	for i := range pp {
		if testenv.SHA256File(t, pp[i]) != testenv.SHA256File(t, sp[i]) {
			t.Errorf("%s: the secondary's image differs from the primary's after both sites were killed in a resync", r.sess.Volumes[i])
		}
	}
}
