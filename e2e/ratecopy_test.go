package e2e

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/bench/harness"
	"duplex/workload"
)

// TestRateLimitedResyncProgressesAndKeepsPrefix runs both sites as
// processes with copy_rate_limit set, changes the limit at run time with
// `duplex pair rate` and sees it in `duplex status`, and resyncs four
// volumes under a dependent-write load: the resync makes progress step by
// step at the limit, not all at once, completes, and the secondary then
// holds a prefix of the acknowledged writes.
func TestRateLimitedResyncProgressesAndKeepsPrefix(t *testing.T) {
	if testing.Short() {
		t.Skip("runs both sites as processes; skipped with -short")
	}
	const (
		blocks   = 2048 // 8 MiB volumes
		clients  = 4
		copyRate = 4 << 20
	)
	r := &resyncRun{t: t, bin: duplexBinary(t),
		layout: workload.Layout{Volumes: 4, BlocksPerVolume: blocks, Clients: clients}}
	var err error
	r.sess, err = harness.NewSession(filepath.Join(t.TempDir(), "s"), harness.Spec{
		Session: "rate", Subsystems: 2, VolumesPerSubsystem: 2, VolumeSize: blocks * workload.BlockSize,
		SidefileLimit: 4 << 20, Interval: 10 * time.Millisecond, SecondaryNBD: true, Token: true,
		CopyRateLimit: 16 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	start := func(role string) *harness.Daemon {
		return startSite(t, r.bin, role, r.sess, filepath.Join(r.sess.Dir, role+".log"))
	}
	r.sec = start("secondary")
	r.prim = start("primary")
	r.waitAll("duplex", time.Minute)
	if st, err := fetchStatus(r.sess.Config.Primary.Control); err != nil {
		t.Fatal(err)
	} else if st.CopyRateLimit == nil || *st.CopyRateLimit != 16<<20 || st.LinkRateLimit == nil || *st.LinkRateLimit != 0 {
		t.Fatalf("status rates %v, %v; want the config's 16 MiB/s copy limit and no link limit", st.CopyRateLimit, st.LinkRateLimit)
	}

	tg, err := harness.DialTarget(r.sess.Config.Primary.NBD, r.sess.Volumes, clients)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.load = &fuzzLoad{cancel: cancel, done: make(chan struct{}), target: tg}
	t.Cleanup(r.load.abort)
	go func() {
		defer close(r.load.done)
		r.load.acked, r.load.err = workload.Run(ctx, r.layout, tg, 0, 13)
	}()
	time.Sleep(500 * time.Millisecond)
	r.duplex("pair", "suspend", "--all")
	r.waitAll("suspended", 30*time.Second)
	time.Sleep(2 * time.Second)

	// At run time, a lower limit, seen in status.
	r.duplex("pair", "rate", "--copy", "4MiB")
	out, err := exec.Command(r.bin, "status", "--addr", r.sess.Config.Primary.Control).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "copy-rate-limit:4.0 MiB/s link-rate-limit:none") {
		t.Fatalf("duplex status after pair rate --copy 4MiB (%v):\n%s", err, out)
	}

	r.duplex("pair", "resume", "--all")
	resumed := time.Now()
	toCopy := r.toCopy()
	t.Logf("resync of %d bytes at a copy limit of %d B/s", toCopy, copyRate)
	steps := map[int64]bool{}
	deadline := resumed.Add(3 * time.Minute)
	for {
		st, err := fetchStatus(r.sess.Config.Primary.Control)
		if err != nil {
			t.Fatal(err)
		}
		var copied int64
		done := true
		for _, v := range st.Volumes {
			copied += v.CopiedBytes
			done = done && v.State == "duplex"
		}
		if done {
			break
		}
		steps[copied] = true
		if time.Now().After(deadline) {
			t.Fatalf("the resync of %d bytes at %d B/s is not done after 3 minutes (%d copied)", toCopy, copyRate, copied)
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(resumed)
	t.Logf("resync done in %s (%.2f MiB/s), %d progress steps seen", took.Round(time.Millisecond), float64(toCopy)/took.Seconds()/(1<<20), len(steps))
	if len(steps) < 3 {
		t.Errorf("only %d progress values seen during a resync of %d bytes at %d B/s: the copy went all at once", len(steps), toCopy, copyRate)
	}
	// Generously below the limit: only a limit that does not hold fails.
	if floor := time.Duration(float64(toCopy-4<<20) / copyRate / 2 * float64(time.Second)); toCopy > 8<<20 && took < floor {
		t.Errorf("a resync of %d bytes at %d B/s took %s, under %s", toCopy, copyRate, took, floor)
	}

	cancel()
	<-r.load.done
	if r.load.err != nil && !errors.Is(r.load.err, context.Canceled) {
		t.Fatalf("workload: %v", r.load.err)
	}
	r.waitSettled()
	img, bad := r.readExports()
	r.check("after the rate-limited resync", img, bad)
}
