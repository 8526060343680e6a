package e2e

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/internal/testenv"
	"duplex/nbd"
	"duplex/site"
	"duplex/workload"
)

// TestDaemonsRejoin is the way back through the daemons: a dependent-write
// workload at the primary A, killed -9; A restarted alone takes writes B
// never sees, and is killed -9 again; recover and promote at B (with
// [primary] listen set, as the primary of the reverse direction), where a
// second dependent-write workload runs; rejoin --yes at A. The copy moves
// only the regions either site changed, far less than the volumes; A is
// killed -9 in the middle of it, and B after it, and each is run again;
// until the copy ends, A's volumes hold what they held before it. At the
// end replication runs from B to A: both sites are byte-identical, and both
// workloads' dependent-write checks pass at A.
func TestDaemonsRejoin(t *testing.T) {
	t.Parallel()
	const (
		mib          = 1 << 20
		volSize      = 16 * mib
		regionBlocks = 128 // each workload's blocks per volume: 512 KiB
		bBase        = 8 * mib
		bBase2       = 9 * mib  // the promoted site's workload after its restart
		aOnly        = 10 * mib // where A writes what B never sees
		bOnly        = 12 * mib // where B writes a known pattern
		lastOff      = 14 * mib // where B writes last, once its workload stopped
	)
	const token = "e2e-rejoin-token"
	link := testenv.FreeAddr(t)
	s := newSession(t, sessionOpts{name: "e2e-rejoin", volSize: volSize, token: token, edit: func(c *config.Config) {
		c.Primary.Listen, c.Primary.Journal = link, filepath.Join(c.Dir, "primary", "journal")
	}})
	s.start()
	s.waitCopyUnmarked()
	names := s.cfg.VolumeNames()

	// A: the dependent-write workload, killed -9 under way.
	layA := workload.Layout{Volumes: len(names), BlocksPerVolume: regionBlocks, Clients: 4}
	runWorkload := func(addr string, lay workload.Layout, base int64) (stop func(), target *nbdTarget) {
		target = dialTarget(t, addr, names, lay, base)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := workload.Run(ctx, lay, target, 0, uint64(time.Now().UnixNano()))
			done <- err
		}()
		target.waitAcked(t)
		return func() { cancel(); <-done; target.close() }, target
	}
	stopA, _ := runWorkload(s.cfg.Primary.NBD, layA, 0)
	time.Sleep(300 * time.Millisecond)
	s.prim.kill()
	stopA()
	s.waitPrimaryGone()
	s.stopSecondary()

	// A comes back alone, takes a write B never sees, and dies again.
	aWrite := bytes.Repeat([]byte{0xa1}, 4096)
	s.writeAloneAndDie(names[1], aWrite, aOnly)

	// B: recover and promote, then its own workload and a known write.
	prom := s.recoverAndPromote()
	st := s.secondaryStatus()
	if st.Role != "primary" || st.PromotedAt == "" {
		t.Fatalf("the promoted site's status: role %q, promoted_at %q; want primary with the time", st.Role, st.PromotedAt)
	}
	promotedAt := st.PromotedAt
	readAt := func(addr string) (func(v int, b []byte, off int64) error, func()) {
		var cs []*nbd.Client
		for _, n := range names {
			cs = append(cs, dialNBD(t, addr, n))
		}
		return func(v int, b []byte, off int64) error { return cs[v].ReadAt(b, off) }, func() {
			for _, c := range cs {
				c.Close()
			}
		}
	}
	readB, closeB := readAt(s.cfg.Secondary.NBD)
	if vs, err := workload.Check(layA, readB); err != nil || len(vs) > 0 {
		t.Fatalf("the promoted site after the promotion: %v, %d violations (%v)", err, len(vs), vs)
	}
	closeB()
	layB := workload.Layout{Volumes: len(names), BlocksPerVolume: regionBlocks, Clients: 4, FirstClient: 10}
	stopB, _ := runWorkload(s.cfg.Secondary.NBD, layB, bBase)
	bWrite := bytes.Repeat([]byte{0xb1}, 4096)
	c := dialNBD(t, s.cfg.Secondary.NBD, names[2])
	if err := c.WriteAt(bWrite, bOnly); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// The copy, slowed so that the kills land in its middle.
	bCtl := control.Endpoint{Addr: s.cfg.Secondary.Control}
	setCopyRate := func(r int64) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := control.SetRates(ctx, bCtl, token, &r, nil); err != nil {
			t.Fatal(err)
		}
	}
	setCopyRate(256 << 10)

	// The report, then the rejoin.
	code, out, errOut := runDuplex(t, "rejoin", "--config", s.path)
	if code != 0 {
		t.Fatalf("rejoin exited %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	t.Logf("rejoin:\n%s", out)
	m := regexp.MustCompile(`in all: copy (\d+) bytes of (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("rejoin's report has no total: %s", out)
	}
	planned, _ := strconv.ParseInt(m[1], 10, 64)
	if total := int64(len(names)) * volSize; planned == 0 || planned > total/4 {
		t.Errorf("the rejoin plans to copy %d bytes of %d, want the changed regions only", planned, total)
	}
	startRejoin := func() *daemon {
		d := startDaemon(t, "rejoin", s.path, filepath.Join(s.dir, "rejoin.log"), "--yes")
		d.waitStarted()
		d.waitReady(s.cfg.Primary.Control)
		return d
	}
	rej := startRejoin()
	copying := func() bool {
		for _, v := range s.secondaryStatus().Volumes {
			if v.State == "pending" {
				return true
			}
		}
		return false
	}
	eventually(t, time.Minute, "the promoted site to start the copy", copying)
	copiesRE := regexp.MustCompile(`the promoted site resumed \d+ pairs and copies (\d+) bytes`)
	eventually(t, 30*time.Second, "rejoin to say what the promoted site copies", func() bool { return copiesRE.MatchString(rej.log()) })
	// What the promoted site's pairs copy: the plan's regions, and those its
	// workload's region gained since the report.
	copies, _ := strconv.ParseInt(copiesRE.FindStringSubmatch(rej.log())[1], 10, 64)
	if copies < planned || copies > planned+int64(len(names))*regionBlocks*workload.BlockSize {
		t.Errorf("the promoted site copies %d bytes, want the %d the report planned, plus at most its workload's region", copies, planned)
	}
	t.Logf("the promoted site copies %d bytes of %d (the report planned %d)", copies, int64(len(names))*volSize, planned)
	if st := s.primaryStatus(); st.Role != "secondary" || st.PromotedAt != promotedAt {
		t.Errorf("the old primary's status: role %q, promoted_at %q; want secondary, primary elsewhere since %s", st.Role, st.PromotedAt, promotedAt)
	}
	// Until the copy ends, A holds its own image, its write B never saw
	// among it. Its read-only export is consistent per request only: the
	// volumes are read while A holds them, or once it applied every group
	// the hold kept back (no one writes the old primary's region since), not
	// while it applies them.
	settledAs := func() string {
		st, err := fetchStatus(s.cfg.Primary.Control)
		switch {
		case err != nil:
			return ""
		case len(st.Resyncing) > 0:
			return "holding"
		case st.HeldGroups == nil || *st.HeldGroups == 0:
			return "applied"
		}
		return ""
	}
	checkHeld := func(when string) {
		for range 100 {
			before := settledAs()
			if before == "" {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			readA, closeA := readAt(s.cfg.Primary.NBD)
			got := make([]byte, 4096)
			err := readA(1, got, aOnly)
			vs, cerr := workload.Check(layA, readA)
			closeA()
			if settledAs() != before {
				continue // the hold ended during the reads
			}
			if err != nil || cerr != nil {
				t.Fatalf("%s: reading the old primary: %v, %v", when, err, cerr)
			}
			if before == "holding" && !bytes.Equal(got, aWrite) {
				t.Errorf("%s, the copy under way: the old primary no longer holds its own write, its volumes moved before the copy ended", when)
			}
			if len(vs) > 0 {
				t.Errorf("%s (%s): the old primary: %d violations (%v)", when, before, len(vs), vs)
			}
			return
		}
		t.Errorf("%s: the old primary was never seen holding its volumes or done applying the held groups", when)
	}

	// The old primary holds its volumes for the resync: the copy is under
	// way at both ends.
	holding := func() bool {
		st, err := fetchStatus(s.cfg.Primary.Control)
		return err == nil && st.Link == "connected" && len(st.Resyncing) > 0
	}
	eventually(t, time.Minute, "the old primary to hold its volumes for the copy", holding)
	checkHeld("before the kill of the old primary")
	rej.kill()
	if _, err := site.ReadRejoin(s.cfg); err != nil {
		t.Fatalf("after the kill -9, the rejoin record: %v", err)
	}
	rej = startRejoin()
	eventually(t, time.Minute, "the old primary, restarted, to hold its volumes for the copy", holding)
	checkHeld("after the old primary's restart")
	// Its own region and clients after the restart: a workload's check
	// reads one run's writes.
	layB2 := workload.Layout{Volumes: len(names), BlocksPerVolume: regionBlocks, Clients: 4, FirstClient: 20}
	if copying() {
		prom.kill()
		stopB()
		t.Logf("killed the promoted site in the middle of the copy: %+v", s.primaryStatus().Resyncing)
		prom = s.startPromote()
		stopB, _ = runWorkload(s.cfg.Secondary.NBD, layB2, bBase2)
	} else {
		t.Log("the copy ended before the promoted site could be killed in its middle")
		stopB()
		stopB = func() {}
	}
	checkHeld("after the promoted site's restart")
	setCopyRate(0)
	eventually(t, 3*time.Minute, "every pair of the reverse direction duplex and linked", func() bool {
		st := s.secondaryStatus()
		if st.Link != "connected" {
			return false
		}
		for _, v := range st.Volumes {
			if v.State != "duplex" {
				return false
			}
		}
		return true
	})
	// The status counts what the copy, the last one after the promoted
	// site's restart, moved: the changed regions again (at the activity
	// log's granularity), far less than the volumes.
	var resynced int64
	for _, v := range s.secondaryStatus().Volumes {
		resynced += v.ResyncedBytes
	}
	t.Logf("the promoted site's last copy moved %d bytes of %d", resynced, int64(len(names))*volSize)
	if total := int64(len(names)) * volSize; resynced == 0 || resynced > total/4 {
		t.Errorf("the promoted site's copy moved %d bytes of %d, want the changed regions only", resynced, total)
	}
	stopB()
	// Drained: the old primary has applied a write the promoted site took
	// after every other one it acknowledged, so (dependent-write order)
	// those too. A consistency time past a reading of the clock would not
	// say so: the promoted site, killed -9, stamps up to its timer's lease
	// ahead of the clock after its restart. And each connection to the old
	// primary reads the group current when it opened, so the reads below,
	// opened too early, would see that group throughout.
	last := bytes.Repeat([]byte{0xb2}, 4096)
	c = dialNBD(t, s.cfg.Secondary.NBD, names[0])
	if err := c.WriteAt(last, lastOff); err != nil {
		t.Fatal(err)
	}
	c.Close()
	eventually(t, time.Minute, "the old primary to apply the promoted site's last write", func() bool {
		if st := s.primaryStatus(); st.HeldGroups != nil && *st.HeldGroups > 0 {
			return false
		}
		read, done := readAt(s.cfg.Primary.NBD)
		defer done()
		got := make([]byte, len(last))
		return read(0, got, lastOff) == nil && bytes.Equal(got, last)
	})
	readA, closeA := readAt(s.cfg.Primary.NBD)
	defer closeA()
	readB, closeB = readAt(s.cfg.Secondary.NBD)
	defer closeB()
	got, want := make([]byte, mib), make([]byte, mib)
	for v, n := range names {
		for off := int64(0); off < volSize; off += mib {
			if err := readB(v, want, off); err != nil {
				t.Fatal(err)
			}
			if err := readA(v, got, off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s [%d, +1MiB): the old primary differs from the promoted site", n, off)
			}
		}
	}
	if err := readA(2, got[:4096], bOnly); err != nil || !bytes.Equal(got[:4096], bWrite) {
		t.Errorf("the promoted site's write is not at the old primary: %v", err)
	}
	if err := readA(1, got[:4096], aOnly); err != nil || bytes.Equal(got[:4096], aWrite) {
		t.Errorf("the old primary's write the promoted site never had is still there: %v", err)
	}
	for _, l := range []struct {
		name string
		lay  workload.Layout
		base int64
	}{{"the old primary's workload", layA, 0}, {"the promoted site's workload", layB, bBase}, {"the promoted site's workload after its restart", layB2, bBase2}} {
		read := func(v int, b []byte, off int64) error { return readA(v, b, l.base+off) }
		vs, err := workload.Check(l.lay, read)
		if err != nil || len(vs) > 0 {
			t.Errorf("%s at the old primary: %v, %d violations (%v)", l.name, err, len(vs), vs)
		}
		if img, _, err := workload.ReadImage(l.lay, read); err != nil {
			t.Fatal(err)
		} else if written, _ := img.Stats(); written == 0 {
			t.Errorf("%s: none of its writes at the old primary: the check ran on empty volumes", l.name)
		}
	}
	if code := rej.stop(); code != 0 {
		t.Errorf("rejoin exited %d after SIGTERM, want 0", code)
	}
	if code := prom.stop(); code != 0 {
		t.Errorf("promote exited %d after SIGTERM, want 0", code)
	}
}
