package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/config"
	"duplex/failover"
	"duplex/internal/testenv"
	"duplex/site"
	"duplex/workload"
)

// timedTarget records, for every dependent write, the wall time it was
// issued and the time its acknowledgement came back.
type timedTarget struct {
	inner workload.Target
	mu    sync.Mutex
	times map[[2]uint64][2]time.Time // (client, counter) -> issued, acked
}

func (x *timedTarget) WriteAt(ctx context.Context, vol int, p []byte, off int64) error {
	b, err := workload.Decode(p)
	if err != nil {
		return err
	}
	key := [2]uint64{uint64(b.Ref.Client), b.Ref.Counter}
	issued := time.Now()
	x.mu.Lock()
	x.times[key] = [2]time.Time{issued, {}}
	x.mu.Unlock()
	if err := x.inner.WriteAt(ctx, vol, p, off); err != nil {
		return err
	}
	acked := time.Now()
	x.mu.Lock()
	x.times[key] = [2]time.Time{issued, acked}
	x.mu.Unlock()
	return nil
}

// checkPrefixAt checks an image recovered to time at: no block holds a
// write issued after at, and no write is there without its dependencies. It
// returns how many blocks hold a write.
func checkPrefixAt(t *testing.T, lay workload.Layout, x *timedTarget, read workload.Reader, at time.Time) (held int) {
	t.Helper()
	img, bad, err := workload.ReadImage(lay, read)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range bad {
		t.Errorf("recovered to %s: undecodable block: %s", at.Format(time.RFC3339Nano), v)
	}
	for _, v := range img.Violations(img, workload.Scope{}) {
		t.Errorf("recovered to %s: dependent-write violation: %s", at.Format(time.RFC3339Nano), v)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for v := range img {
		for blk, b := range img[v] {
			if b.Ref.Counter == 0 {
				continue
			}
			held++
			tm, ok := x.times[[2]uint64{uint64(b.Ref.Client), b.Ref.Counter}]
			if !ok {
				t.Errorf("recovered to %s: block %d of volume %d holds write %d.%d, never issued", at.Format(time.RFC3339Nano), blk, v, b.Ref.Client, b.Ref.Counter)
				continue
			}
			if tm[0].After(at) {
				t.Errorf("recovered to %s: block %d of volume %d holds write %d.%d issued after it, at %s",
					at.Format(time.RFC3339Nano), blk, v, b.Ref.Client, b.Ref.Counter, tm[0].Format(time.RFC3339Nano))
			}
		}
	}
	return held
}

// mustHoldAcked checks that every write acknowledged before reached is in
// the image (it or a newer write of the same client to its block): the
// blocks of one client only grow newer.
func mustHoldAcked(t *testing.T, lay workload.Layout, x *timedTarget, written map[[2]uint64]workload.Ref, read workload.Reader, reached time.Time) int {
	t.Helper()
	img, _, err := workload.ReadImage(lay, read)
	if err != nil {
		t.Fatal(err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	n := 0
	for key, ref := range written {
		tm := x.times[key]
		if tm[1].IsZero() || !tm[1].Before(reached) {
			continue
		}
		n++
		got := img[ref.Volume][ref.Block]
		if got.Ref.Client != ref.Client || got.Ref.Counter < ref.Counter {
			t.Errorf("recovered to %s: write %d.%d to block %d of volume %d, acknowledged at %s, is missing (the block holds %d.%d)",
				reached.Format(time.RFC3339Nano), ref.Client, ref.Counter, ref.Block, ref.Volume, tm[1].Format(time.RFC3339Nano), got.Ref.Client, got.Ref.Counter)
		}
	}
	return n
}

// refTarget records where every write went, by (client, counter).
type refTarget struct {
	inner workload.Target
	mu    sync.Mutex
	refs  map[[2]uint64]workload.Ref
}

func (x *refTarget) WriteAt(ctx context.Context, vol int, p []byte, off int64) error {
	b, err := workload.Decode(p)
	if err != nil {
		return err
	}
	x.mu.Lock()
	x.refs[[2]uint64{uint64(b.Ref.Client), b.Ref.Counter}] = b.Ref
	x.mu.Unlock()
	return x.inner.WriteAt(ctx, vol, p, off)
}

var recoveredRE = regexp.MustCompile(`recovered to group (\d+), consistent as of (\S+)`)

// TestDaemonsRecoverAt: with [secondary] history on, dependent writes go on
// over NBD while the test notes several wall times T, and the secondary is
// restarted among them; then, both sites stopped, duplex recover --at T for
// each T, newest first, leaves the secondary volumes holding exactly a
// prefix of the writes: every write acknowledged before T - interval, none
// issued after T, no write without its dependencies. A recover killed -9 and run again reaches the same
// group and bytes; a time before the window is refused with the window.
func TestDaemonsRecoverAt(t *testing.T) {
	t.Parallel()
	const (
		volSize      = 16 << 20
		regionBlocks = 256
	)
	s := newSession(t, sessionOpts{name: "e2e-recover-at", volSize: volSize, edit: func(c *config.Config) {
		c.Secondary.History = config.Duration(time.Hour)
	}})
	s.start()
	names := s.cfg.VolumeNames()
	lay := workload.Layout{Volumes: len(names), BlocksPerVolume: regionBlocks, Clients: 4}
	nt := dialTarget(t, s.cfg.Primary.NBD, names, lay, 0)
	timed := &timedTarget{inner: nt, times: map[[2]uint64][2]time.Time{}}
	refs := &refTarget{inner: timed, refs: map[[2]uint64]workload.Ref{}}
	ctx, cancel := context.WithCancel(context.Background())
	loadDone := make(chan error, 1)
	go func() {
		_, err := workload.Run(ctx, lay, refs, 0, uint64(time.Now().UnixNano()))
		loadDone <- err
	}()
	nt.waitAcked(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	var ts []time.Time
	note := func() {
		time.Sleep(time.Duration(300+rng.IntN(500)) * time.Millisecond)
		ts = append(ts, time.Now())
	}
	note()
	note()
	// A restart of the secondary among the times: its history outlives it.
	s.sec.kill()
	time.Sleep(300 * time.Millisecond)
	s.startSecondary()
	eventually(t, time.Minute, "the link back", func() bool { return s.secondaryStatus().Link == "connected" })
	note()
	note()
	time.Sleep(500 * time.Millisecond)
	cancel()
	if err := <-loadDone; err != nil {
		t.Fatalf("dependent writes: %v", err)
	}
	st := s.secondaryStatus()
	if st.HistoryOldest == "" || st.HistoryNewest == "" || st.HistoryBytes == nil || *st.HistoryBytes == 0 {
		t.Fatalf("status shows no history window: oldest %q newest %q", st.HistoryOldest, st.HistoryNewest)
	}
	oldest, err := time.Parse(time.RFC3339Nano, st.HistoryOldest)
	if err != nil || !oldest.Before(ts[0]) {
		t.Fatalf("history_oldest %q (%v): want a time before the first noted, %s", st.HistoryOldest, err, ts[0])
	}
	t.Logf("history window %s to %s, %d bytes; %d dependent writes acknowledged", st.HistoryOldest, st.HistoryNewest, *st.HistoryBytes, nt.acked.Load())
	s.drainPrimary()
	s.stopSecondary()
	if code, out, errOut := runDuplex(t, "status", "--config", s.path); code == 0 && strings.Contains(out, "history:") {
		t.Logf("status of the stopped sites:\n%s%s", out, errOut)
	}

	read := func(v int, b []byte, off int64) error {
		_, sp := s.volumePaths(names[v])
		f, err := os.Open(sp)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.ReadAt(b, off)
		return err
	}
	interval := time.Duration(s.cfg.Interval)
	recoverAt := func(at time.Time) (uint64, time.Time, string) {
		t.Helper()
		code, out, errOut := runDuplex(t, "recover", "--config", s.path, "--at", at.UTC().Format(time.RFC3339Nano), "--log-level", "error")
		if code != 0 {
			t.Fatalf("recover --at %s: exit %d\nstdout: %s\nstderr: %s", at.UTC().Format(time.RFC3339Nano), code, out, errOut)
		}
		m := recoveredRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("recover --at: no \"recovered to group G, consistent as of T\":\n%s", out)
		}
		g, _ := strconv.ParseUint(m[1], 10, 64)
		reached, err := time.Parse(time.RFC3339Nano, m[2])
		if err != nil {
			t.Fatal(err)
		}
		return g, reached, out
	}
	hashes := func() string {
		var b strings.Builder
		for _, n := range names {
			_, sp := s.volumePaths(n)
			fmt.Fprintf(&b, "%x ", testenv.SHA256File(t, sp))
		}
		return b.String()
	}
	late := 0
	for i := len(ts) - 1; i >= 0; i-- {
		at := ts[i]
		if i == len(ts)-2 {
			// Killed -9 at some moment of its work, then run again.
			cmd := exec.Command(duplexBinary(t), "recover", "--config", s.path, "--at", at.UTC().Format(time.RFC3339Nano), "--log-level", "error")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
			cmd.Process.Kill()
			werr := cmd.Wait()
			t.Logf("recover --at killed -9 after a random delay: %v", werr)
		}
		g, reached, out := recoverAt(at)
		if reached.After(at) {
			t.Errorf("recover --at %s reached group %d as of %s, after it", at.Format(time.RFC3339Nano), g, reached.Format(time.RFC3339Nano))
		}
		if at.Sub(reached) > interval {
			// The time reached is that of the newest write of the step it
			// reached: far before T when nothing was written in between.
			late++
			t.Logf("recover --at %s: group %d as of %s, %s before it (interval %s)", at.Format(time.RFC3339Nano), g, reached.Format(time.RFC3339Nano), at.Sub(reached), interval)
		}
		held := checkPrefixAt(t, lay, timed, read, at)
		// Every write acknowledged before T - interval is there, however
		// long the groups formed under load: the history keeps a point at
		// least every interval of writes, also inside a group.
		n := mustHoldAcked(t, lay, timed, refs.refs, read, at.Add(-interval))
		t.Logf("recover --at %s: group %d as of %s; %d blocks hold writes, every one of the %d writes acknowledged before T - interval among them\n%s",
			at.Format(time.RFC3339Nano), g, reached.Format(time.RFC3339Nano), held, n, out)
		// Run again: the same group, the same bytes.
		before := hashes()
		g2, reached2, _ := recoverAt(at)
		if g2 != g || !reached2.Equal(reached) || hashes() != before {
			t.Errorf("recover --at %s run again: group %d as of %s, bytes changed %v; the first run reached group %d as of %s",
				at.Format(time.RFC3339Nano), g2, reached2, hashes() != before, g, reached)
		}
	}
	if late > 0 {
		loadavg, _ := os.ReadFile("/proc/loadavg")
		t.Logf("%d of %d times reached a point more than an interval before them (load average %s)", late, len(ts), strings.TrimSpace(string(loadavg)))
	}
	// The regions the recoveries took back, where the old primary holds
	// writes the secondary no longer has, are among the changed regions a
	// promotion of the secondary starts from: a rejoin after it copies
	// them back to the old primary.
	sizes := map[string]int64{}
	for _, n := range names {
		sizes[n] = volSize
	}
	ch, err := failover.OpenChanges(nil, site.PromotedDir(s.cfg), sizes)
	if err != nil {
		t.Fatal(err)
	}
	differ, unmarked := 0, 0
	for _, n := range names {
		bm := ch.Bitmap(n)
		marked := map[int64]bool{}
		for r := int64(0); ; r++ {
			reg, _, _, ok := bm.Next(r)
			if !ok {
				break
			}
			marked[reg], r = true, reg
		}
		p, q := s.volumePaths(n)
		pb, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		qb, err := os.ReadFile(q)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(pb); off += workload.BlockSize {
			if bytes.Equal(pb[off:off+workload.BlockSize], qb[off:off+workload.BlockSize]) {
				continue
			}
			differ++
			if !marked[int64(off)/bm.Region()] {
				unmarked++
			}
		}
	}
	ch.Close()
	if differ == 0 || unmarked > 0 {
		t.Errorf("after recover --at: %d blocks differ from the old primary's, %d of them outside the changed regions a promotion starts from", differ, unmarked)
	} else {
		t.Logf("after recover --at: %d blocks differ from the old primary's, every one in the changed regions a promotion starts from", differ)
	}
	// Before the window: refused, with the window.
	code, out, errOut := runDuplex(t, "recover", "--config", s.path, "--at", oldest.Add(-time.Minute).UTC().Format(time.RFC3339Nano))
	if code != 1 || !strings.Contains(errOut, "before the oldest recoverable time") || !strings.Contains(errOut, " to ") {
		t.Errorf("recover --at before the window: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	t.Logf("refused: %s", strings.TrimSpace(errOut))
	// After the newest of the window, later than the last recovery: the
	// volumes stay where they are.
	before := hashes()
	if code, out, errOut := runDuplex(t, "recover", "--config", s.path, "--at", "-0s"); code != 0 || hashes() != before {
		t.Errorf("recover --at now after recovering to the past: exit %d, bytes changed %v\n%s%s", code, hashes() != before, out, errOut)
	}
}
