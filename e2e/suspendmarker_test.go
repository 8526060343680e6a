package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"duplex/bench/harness"
	"duplex/control"
)

// TestSuspensionAnsweredSurvivesPrimaryKill suspends a pair while the link is
// down, so that the marker announcing the suspension is still in the
// primary's sidefile, and kills the primary with -9: once the restarted
// primary links again, the secondary must report the volume suspended, not
// duplex and consistent with the others as of every later group while its
// writes go only to the primary's bitmap.
func TestSuspensionAnsweredSurvivesPrimaryKill(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs both sites as processes; skipped with -short")
	}
	bin := duplexBinary(t)
	dir := t.TempDir()
	sess, err := harness.NewSession(filepath.Join(dir, "s"), harness.Spec{
		Session: "suspendmarker", Subsystems: 1, VolumesPerSubsystem: 2, VolumeSize: 2 << 20,
		SidefileLimit: 8 << 20, Interval: 10 * time.Millisecond, Proxy: true, Token: true,
		SuspendAfter: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := harness.NewProxy(sess.LinkAddr, sess.Config.Secondary.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	start := func(role, addr string) *harness.Daemon {
		t.Helper()
		d := startSite(t, bin, role, sess, filepath.Join(sess.Dir, role+".log"))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := harness.WaitStatus(ctx, d, addr, func(control.Status) bool { return true }); err != nil {
			t.Fatalf("%s did not start: %v", role, err)
		}
		return d
	}
	sec := start("secondary", sess.Config.Secondary.Control)
	prim := start("primary", sess.Config.Primary.Control)
	vol := sess.Volumes[0]
	waitStatus := func(d *harness.Daemon, addr, what string, cond func(control.Status) bool) control.Status {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		st, err := harness.WaitStatus(ctx, d, addr, cond)
		if err != nil {
			t.Fatalf("waiting for %s: %v (last status %+v)", what, err, st)
		}
		return st
	}
	allDuplex := func(st control.Status) bool {
		for _, vs := range st.Volumes {
			if vs.State != "duplex" {
				return false
			}
		}
		return len(st.Volumes) == len(sess.Volumes)
	}
	waitStatus(prim, sess.Config.Primary.Control, "every pair duplex at the primary", allDuplex)
	waitStatus(sec, sess.Config.Secondary.Control, "every volume duplex at the secondary", allDuplex)

	proxy.Cut()
	token, err := control.ReadToken(sess.Config.TokenPath())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	_, err = control.PairOp(ctx, control.Endpoint{Addr: sess.Config.Primary.Control}, token, vol, "suspend", false)
	cancel()
	if err != nil {
		t.Fatalf("suspend %s: %v", vol, err)
	}
	before := waitStatus(sec, sess.Config.Secondary.Control, "the secondary's status", func(control.Status) bool { return true })
	prim.Kill()
	prim = start("primary", sess.Config.Primary.Control)
	proxy.Restore()
	// A write to the other volume makes a group for the secondary to journal.
	tg, err := harness.DialTarget(sess.Config.Primary.NBD, sess.Volumes, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	err = tg.WriteAt(ctx, 1, make([]byte, 4096), 0)
	cancel()
	if err != nil {
		t.Fatalf("write to %s after the restart: %v", sess.Volumes[1], err)
	}

	// Once the secondary has journaled a group from after the restart, it
	// has read what the restarted primary announced first.
	st := waitStatus(sec, sess.Config.Secondary.Control, "a group from the restarted primary", func(st control.Status) bool {
		return st.Group != nil && before.Group != nil && *st.Group > *before.Group
	})
	for _, vs := range st.Volumes {
		if vs.Name == vol && vs.State != "suspended" {
			t.Fatalf("the secondary reports %s %s (%s) after the restarted primary linked; it was suspended, answered, before the kill -9",
				vol, vs.State, vs.Consistency)
		}
	}
	if ps := waitStatus(prim, sess.Config.Primary.Control, "the primary's status", func(control.Status) bool { return true }); ps.Volumes[0].State != "suspended" {
		t.Fatalf("the primary reports %s %s after its restart, want suspended", vol, ps.Volumes[0].State)
	}
}
