package e2e

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"duplex/bench/harness"
	"duplex/control"
	"duplex/nbd"
	"duplex/workload"
)

// TestDependentWritesThroughARestartThatWaitsForRoom: a primary killed
// with one pair (v001) in the middle of a resync and another (v003) whose
// activity-log regions do not fit half its sidefile restarts with a resync
// it would continue at once and one that must wait for the secondary's
// journal room, which nobody knows before the link is up. Whatever it
// does, the secondary's volumes must stay at one time: a write to v003
// acknowledged after the restart, then writes to v001 (the resync's pair)
// and to v002 (a duplex pair nothing was recovered for), must never be
// found at the secondary without the write to v003 before them, and once
// every pair is duplex again all three are there. Before the fix, v001's
// resync ended before v003's began: the secondary applied v001's writes
// while v003 stayed as of its suspension.
func TestDependentWritesThroughARestartThatWaitsForRoom(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs both sites as processes; skipped with -short")
	}
	const (
		sidefile = 2 << 20
		region   = 1 << 20 // the activity log's region, more than half the sidefile
		block    = workload.BlockSize
	)
	bin := duplexBinary(t)
	sess, err := harness.NewSession(filepath.Join(t.TempDir(), "s"), harness.Spec{
		Session: "restart-room", Subsystems: 2, VolumesPerSubsystem: 2, VolumeSize: 4 * region,
		SidefileLimit: sidefile, Interval: 10 * time.Millisecond, SecondaryNBD: true, Token: true,
		// The writes wait for the secondary rather than suspend the
		// session, so their regions stay in the activity log.
		SuspendAfter: 10 * time.Minute,
		// v003's resync of a full region takes two seconds: long enough
		// to read the secondary while it runs.
		CopyRateLimit: 512 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	resync, joined, recovered := "v001", "v002", "v003"
	n := 0
	start := func(role string) *harness.Daemon {
		n++
		return startSite(t, bin, role, sess, filepath.Join(sess.Dir, role+string(rune('0'+n))+".log"))
	}
	r := &resyncRun{t: t, bin: bin, sess: sess}
	r.sec = start("secondary")
	r.prim = start("primary")
	r.waitAll("duplex", time.Minute)

	pattern := func(b byte) []byte { return bytes.Repeat([]byte{b}, block) }
	write := func(vol string, off int64, p []byte) {
		t.Helper()
		c := dialNBD(t, sess.Config.Primary.NBD, vol)
		defer c.Close()
		if err := c.WriteAt(p, off); err != nil {
			t.Fatalf("write %s at %d: %v", vol, off, err)
		}
	}
	// v003's first region holds data, not a hole: its resync after the
	// restart reads it, paced by the copy rate.
	for off := int64(0); off < region; off += 64 << 10 {
		write(recovered, off, bytes.Repeat([]byte{1}, 64<<10))
	}
	// v001 suspended and written: its resync has regions to copy.
	r.duplex("pair", "suspend", resync)
	for _, off := range []int64{0, 2 << 16, 5 << 16} {
		write(resync, off, pattern(2))
	}
	// With the secondary gone, v001's resync is captured and never
	// acknowledged (pending at the kill), and a write to v003 marks its
	// first region in the activity log, unacknowledged.
	r.sec.Kill()
	r.duplex("pair", "resume", resync)
	write(recovered, 0, pattern(3))
	r.prim.Kill()

	r.prim = start("primary")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Whatever the restart does with v001, its copy is done (or not
	// started) before the link is up: a resync it continued at once has
	// ended at the primary by then.
	st, err := harness.WaitStatus(ctx, r.prim, sess.Config.Primary.Control, func(st control.Status) bool {
		for _, v := range st.Volumes {
			if v.Name == resync && v.State == "pending" && v.CopiedBytes < v.SizeBytes {
				return false
			}
		}
		return len(st.Volumes) == len(sess.Volumes)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range st.Volumes {
		t.Logf("after the restart: %s %s %s", v.Name, v.State, v.Reason)
	}
	// X, acknowledged, then Y and Z issued: the secondary must never hold
	// Y or Z without X.
	x, y, z := pattern('X'), pattern('Y'), pattern('Z')
	write(recovered, 3*block, x)
	write(resync, 3*block, y)
	write(joined, 3*block, z)

	r.sec = start("secondary")
	// read reads vol's block 3 at the secondary, over a connection of its
	// own (a connection reads the state of the moment it was opened); ok
	// is false while its export is not served yet.
	read := func(vol string) (got []byte, ok bool) {
		c, err := nbd.Dial(sess.Config.Secondary.NBD, vol)
		if err != nil {
			return nil, false
		}
		defer c.Close()
		p := make([]byte, block)
		if err := c.ReadAt(p, 3*block); err != nil {
			t.Fatalf("read %s at the secondary: %v", vol, err)
		}
		return p, true
	}
	duplex := func() bool {
		st, err := fetchStatus(sess.Config.Primary.Control)
		if err != nil {
			return false
		}
		for _, v := range st.Volumes {
			if v.State != "duplex" {
				return false
			}
		}
		return true
	}
	reads := 0
	deadline := time.Now().Add(time.Minute)
	for !duplex() {
		if time.Now().After(deadline) {
			t.Fatalf("the pairs are not all duplex a minute after the secondary's restart")
		}
		// Y and Z are read before X, so X is read in a later state,
		// which holds X if the earlier one held Y or Z.
		gy, oky := read(resync)
		gz, okz := read(joined)
		gx, okx := read(recovered)
		if !oky || !okz || !okx {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		reads++
		if (bytes.Equal(gy, y) || bytes.Equal(gz, z)) && !bytes.Equal(gx, x) {
			t.Fatalf("the secondary holds the write to %s (%t) or to %s (%t), issued after the write to %s was acknowledged, without that write: "+
				"its volumes are not at one time", resync, bytes.Equal(gy, y), joined, bytes.Equal(gz, z), recovered)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.waitSettled()
	for vol, want := range map[string][]byte{recovered: x, resync: y, joined: z} {
		if got, ok := read(vol); !ok || !bytes.Equal(got, want) {
			t.Errorf("%s at the secondary once every pair is duplex again: the acknowledged write %q is lost", vol, want[0])
		}
	}
	t.Logf("%d reads of the secondary while the pairs resumed", reads)
}
