package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/internal/testenv"
	"duplex/workload"
)

// volumeReader reads a site's volumes from their image files: the site is
// stopped, or takes no writes (switched over), or has settled.
func volumeReader(t *testing.T, paths []string) (func(v int, b []byte, off int64) error, func()) {
	t.Helper()
	var fs []*os.File
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	return func(v int, b []byte, off int64) error {
			_, err := fs[v].ReadAt(b, off)
			return err
		}, func() {
			for _, f := range fs {
				f.Close()
			}
		}
}

// checkDependent runs the dependent-write check of each load on read.
func checkDependent(t *testing.T, where string, read func(v int, b []byte, off int64) error, loads map[string]*loggedLoad) {
	t.Helper()
	for name, l := range loads {
		r := func(v int, b []byte, off int64) error { return read(v, b, l.base+off) }
		vs, err := workload.Check(l.lay, r)
		if err != nil {
			t.Fatalf("%s, %s: %v", where, name, err)
		}
		for _, v := range vs[:min(len(vs), 5)] {
			t.Errorf("%s, %s: %s", where, name, v)
		}
		if img, _, err := workload.ReadImage(l.lay, r); err != nil {
			t.Fatal(err)
		} else if written, _ := img.Stats(); written == 0 {
			t.Errorf("%s, %s: none of its writes there: the check ran on empty volumes", where, name)
		}
	}
}

// checkAcked fails unless every logged write of l acknowledged is on read.
func checkAcked(t *testing.T, where, what string, read func(v int, b []byte, off int64) error, l *loggedLoad) int {
	t.Helper()
	acked := l.acked()
	if len(acked) == 0 {
		t.Fatalf("%s: no logged write was acknowledged", what)
	}
	got := make([]byte, 4096)
	for _, w := range acked {
		if err := read(w.vol, got, w.off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, w.data) {
			t.Fatalf("%s: a write %s acknowledged (4096 bytes at %d of volume %d) is missing", where, what, w.off, w.vol)
		}
	}
	return len(acked)
}

// checkAckedQuiet counts l's acknowledged logged writes missing from read.
func checkAckedQuiet(read func(v int, b []byte, off int64) error, l *loggedLoad) int {
	missing := 0
	got := make([]byte, 4096)
	for _, w := range l.acked() {
		if err := read(w.vol, got, w.off); err != nil || !bytes.Equal(got, w.data) {
			missing++
		}
	}
	return missing
}

var copyPlanRE = regexp.MustCompile(`in all: copy (\d+) bytes of (\d+)`)

func plannedCopy(t *testing.T, out string) int64 {
	t.Helper()
	m := copyPlanRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the rejoin's report has no total:\n%s", out)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// TestDaemonsRoundTrip is the whole way out and back through the daemons,
// with clients writing at whichever site is the primary: A (the [primary]
// section) takes dependent and logged writes and is killed -9; it comes
// back alone, takes a write B never sees, and is killed again; recover and
// promote at B, where the clients go on; rejoin at A copies only the
// regions either site changed; switchover at B hands the session back
// under load: A is the primary again, every write B acknowledged there;
// the clients go on at A; rejoin at B (the same command) makes it A's
// secondary again, copying only what A wrote since; replication runs A to
// B, both sites end byte-identical, every write acknowledged by the site
// that was primary at the time (after the failover) is at both, and the
// dependent-write check passes at each step; a restart of both as plain
// duplex primary and duplex secondary links them with nothing to copy.
func TestDaemonsRoundTrip(t *testing.T) {
	t.Parallel()
	const (
		mib     = 1 << 20
		volSize = 64 * mib
		aOnly   = 3 * mib // A's write B never sees
		bOnly   = 11 * mib
	)
	const token = "e2e-roundtrip-token"
	link := testenv.FreeAddr(t)
	s := newSession(t, sessionOpts{name: "e2e-roundtrip", volSize: volSize, token: token, edit: func(c *config.Config) {
		c.Primary.Listen, c.Primary.Journal = link, filepath.Join(c.Dir, "primary", "journal")
	}})
	s.start()
	s.waitCopyUnmarked()
	names := s.cfg.VolumeNames()
	var aPaths, bPaths []string
	for _, n := range names {
		p, q := s.volumePaths(n)
		aPaths, bPaths = append(aPaths, p), append(bPaths, q)
	}
	total := int64(len(names)) * volSize
	seed := uint64(time.Now().UnixNano())
	loadavg := func() string { b, _ := os.ReadFile("/proc/loadavg"); return strings.TrimSpace(string(b)) }

	// 1. A is the primary; killed -9 under load.
	loadA := startLoggedLoad(t, s.cfg.Primary.NBD, names, 0, 0, 1*mib, 2*mib, seed)
	time.Sleep(500 * time.Millisecond)
	s.prim.kill()
	loadA.end()
	s.waitPrimaryGone()
	s.stopSecondary()
	// A comes back alone, takes a write B never sees, and dies again.
	aWrite := bytes.Repeat([]byte{0xa1}, 4096)
	s.writeAloneAndDie(names[1], aWrite, aOnly)

	// 2. Failover: recover and promote at B; the clients go on there.
	prom := s.recoverAndPromote()
	readB, closeB := volumeReader(t, bPaths)
	checkDependent(t, "at B after the failover", readB, map[string]*loggedLoad{"A's first clients": loadA})
	closeB()
	loadB := startLoggedLoad(t, s.cfg.Secondary.NBD, names, 10, 8*mib, 9*mib, 10*mib, seed+1)
	defer loadB.end()
	bWrite := bytes.Repeat([]byte{0xb1}, 4096)
	c := dialNBD(t, s.cfg.Secondary.NBD, names[2])
	if err := c.WriteAt(bWrite, bOnly); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// 3. Rejoin at A: the regions either site changed, no more. A's own
	// are at its activity log's 1 MiB granularity: [0, 4 MiB) of each
	// volume; B's, at 64 KiB, its clients' regions and bOnly's.
	code, out, errOut := runDuplex(t, "rejoin", "--config", s.path)
	if code != 0 {
		t.Fatalf("rejoin exited %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	rejoinBound := int64(len(names)) * (4*mib + loggedLoadBlocks*workload.BlockSize + mib + 64<<10)
	planned := plannedCopy(t, out)
	t.Logf("rejoin at A plans to copy %d bytes of %d (the regions written bound it at %d)", planned, total, rejoinBound)
	if planned == 0 || planned > rejoinBound {
		t.Errorf("rejoin at A plans to copy %d bytes, want some and at most the %d of the regions written", planned, rejoinBound)
	}
	rej := startDaemon(t, "rejoin", s.path, filepath.Join(s.dir, "rejoin.log"), "--yes")
	rej.waitStarted()
	rej.waitReady(s.cfg.Primary.Control)
	allDuplex := func(st func() control.Status) bool {
		v := st()
		if v.Link != "connected" || len(v.Volumes) == 0 {
			return false
		}
		for _, vol := range v.Volumes {
			if vol.State != "duplex" {
				return false
			}
		}
		return true
	}
	eventually(t, 3*time.Minute, "the copy to A to end, every pair of B duplex", func() bool { return allDuplex(s.secondaryStatus) })
	var copied int64
	for _, v := range s.secondaryStatus().Volumes {
		copied += v.ResyncedBytes
	}
	t.Logf("rejoin at A: B copied %d bytes of %d (load average %s)", copied, total, loadavg())
	if copied == 0 || copied > rejoinBound {
		t.Errorf("B copied %d bytes to A, want some and at most the %d of the regions written", copied, rejoinBound)
	}

	// 4. Switchover at B, under load: A is the primary again.
	time.Sleep(300 * time.Millisecond)
	freed := watchFreedAddrs(t, s.cfg.Primary.NBD, s.cfg.Primary.Control)
	code, out, errOut = runDuplex(t, "switchover", "--config", s.path, "--timeout", "90s")
	if code != 0 {
		t.Fatalf("switchover back: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	t.Logf("duplex switchover at B (load average %s):\n%s", loadavg(), out)
	if !strings.Contains(out, "write pause: ") || !strings.Contains(out, "the primary site is the session's primary") {
		t.Errorf("switchover back's output lacks the write pause or the new primary:\n%s", out)
	}
	loadB.end()
	eventually(t, time.Minute, "A to serve as the primary", func() bool {
		freed.check(t, "the switchover back", false)
		st, err := fetchStatus(s.cfg.Primary.Control)
		return err == nil && st.Role == "primary"
	})
	freed.check(t, "the switchover back", true)
	if st := s.primaryStatus(); st.PrimarySite != "primary" || st.PrimarySince == "" {
		t.Errorf("A's status after the switchover back: primary_site %q since %q", st.PrimarySite, st.PrimarySince)
	}
	if st := s.secondaryStatus(); st.Role != "switched-over" || st.PrimarySite != "primary" {
		t.Errorf("B's status after the switchover back: role %q, primary_site %q", st.Role, st.PrimarySite)
	}
	readA, closeA := volumeReader(t, aPaths)
	readB, closeB = volumeReader(t, bPaths)
	n := checkAcked(t, "at A after the switchover back", "B", readA, loadB)
	checkAcked(t, "at B after the switchover back", "B", readB, loadB)
	t.Logf("%d logged writes B acknowledged are at A", n)
	for _, site := range []struct {
		name string
		read func(v int, b []byte, off int64) error
	}{{"A", readA}, {"B", readB}} {
		checkDependent(t, "at "+site.name+" after the switchover back", site.read, map[string]*loggedLoad{"A's first clients": loadA, "B's clients": loadB})
	}
	got := make([]byte, 4096)
	if err := readA(1, got, aOnly); err != nil || bytes.Equal(got, aWrite) {
		t.Errorf("A's write B never had is still at A: %v", err)
	}
	if err := readA(2, got, bOnly); err != nil || !bytes.Equal(got, bWrite) {
		t.Errorf("B's write is not at A: %v", err)
	}
	closeA()
	closeB()

	// 5. The clients go on at A; B's promoted daemon stops; rejoin at B.
	loadA2 := startLoggedLoad(t, s.cfg.Primary.NBD, names, 20, 16*mib, 17*mib, 18*mib, seed+2)
	defer loadA2.end()
	if code := prom.stop(); code != 0 {
		t.Errorf("B's promoted daemon, switched over, exited %d after SIGTERM, want 0", code)
	}
	code, out, errOut = runDuplex(t, "rejoin", "--config", s.path)
	if code != 0 {
		t.Fatalf("rejoin at B exited %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	backBound := int64(len(names)) * (loggedLoadBlocks*workload.BlockSize + mib)
	planned = plannedCopy(t, out)
	t.Logf("rejoin at B plans to copy %d bytes of %d (A's regions written since bound it at %d):\n%s", planned, total, backBound, out)
	if planned == 0 || planned > backBound {
		t.Errorf("rejoin at B plans to copy %d bytes, want some and at most the %d of the regions A wrote", planned, backBound)
	}
	// The copy, slowed so that a kill -9 of either site lands in its
	// middle; each is then run again as it was.
	setCopyRate := func(r int64) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := control.SetRates(ctx, control.Endpoint{Addr: s.cfg.Primary.Control}, token, &r, nil); err != nil {
			t.Fatal(err)
		}
	}
	setCopyRate(256 << 10)
	startRejB := func() *daemon {
		d := startDaemon(t, "rejoin", s.path, filepath.Join(s.dir, "rejoin-b.log"), "--yes")
		d.waitStarted()
		d.waitReady(s.cfg.Secondary.Control)
		return d
	}
	rejB := startRejB()
	holdingB := func() bool {
		st, err := fetchStatus(s.cfg.Secondary.Control)
		return err == nil && st.Link == "connected" && len(st.Resyncing) > 0
	}
	copyingA := func() bool {
		for _, v := range s.primaryStatus().Volumes {
			if v.State == "pending" {
				return true
			}
		}
		return false
	}
	killedA := false
	eventually(t, time.Minute, "B to hold its volumes for A's copy", holdingB)
	rejB.kill()
	rejB = startRejB()
	if copyingA() {
		t.Logf("killed B in the middle of A's copy: %v", s.primaryStatus().Resyncing)
		rej.kill()
		loadA2.end()
		killedA = true
		rej = startDaemon(t, "primary", s.path, filepath.Join(s.dir, "primary-again.log"))
		rej.waitStarted()
		rej.waitReady(s.cfg.Primary.Control)
		t.Logf("killed A in the middle of its copy to B; it restarts as duplex primary")
	} else {
		t.Log("A's copy ended before the kills could land in its middle")
	}
	// B, run again, holds its volumes as they were at the switchover
	// until the copy ends: consistent, its clients' writes all there. Read
	// while it holds them (before and after the reads), not while it
	// applies the held groups.
	for i := 0; ; i++ {
		if i == 100 {
			t.Log("B was never seen holding its volumes after the kills: the copy ended")
			break
		}
		if !holdingB() {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		readB, closeB := volumeReader(t, bPaths)
		missing := checkAckedQuiet(readB, loadB)
		closeB()
		if !holdingB() {
			continue
		}
		if missing > 0 {
			t.Errorf("B, killed -9 in the middle of the copy and run again: %d writes it acknowledged as the primary are missing while it holds its volumes", missing)
		}
		readB, closeB = volumeReader(t, bPaths)
		checkDependent(t, "at B, killed -9 in the middle of the copy and run again", readB, map[string]*loggedLoad{"A's first clients": loadA, "B's clients": loadB})
		closeB()
		break
	}
	setCopyRate(0)
	eventually(t, 3*time.Minute, "the copy to B to end, every pair of A duplex", func() bool { return allDuplex(s.primaryStatus) })
	copied = 0
	for _, v := range s.primaryStatus().Volumes {
		copied += v.ResyncedBytes
	}
	if killedA {
		// A's crash recovery copies the regions its activity log marked,
		// at 1 MiB: its clients' two MiB per volume.
		backBound = int64(len(names)) * (2*mib + 64<<10)
	}
	t.Logf("rejoin at B: A copied %d bytes of %d (load average %s)", copied, total, loadavg())
	if copied == 0 || copied > backBound {
		t.Errorf("A copied %d bytes to B, want some and at most the %d of the regions it wrote", copied, backBound)
	}
	if st := s.secondaryStatus(); st.Role != "secondary" {
		t.Errorf("B's role after the rejoin: %q", st.Role)
	}

	// 6. Quiet: B applied past A's last write; both byte-identical.
	loadA2.end()
	quiet := time.Now()
	eventually(t, time.Minute, "B to apply past A's last write", func() bool {
		st := s.secondaryStatus()
		if st.HeldGroups != nil && *st.HeldGroups > 0 || st.Group == nil || st.JournaledGroup == nil || *st.Group != *st.JournaledGroup {
			return false
		}
		return consistencyTime(t, st).After(quiet)
	})
	readA, closeA = volumeReader(t, aPaths)
	defer closeA()
	readB, closeB = volumeReader(t, bPaths)
	defer closeB()
	ga, gb := make([]byte, mib), make([]byte, mib)
	for v, name := range names {
		for off := int64(0); off < volSize; off += mib {
			if err := readA(v, ga, off); err != nil {
				t.Fatal(err)
			}
			if err := readB(v, gb, off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ga, gb) {
				t.Errorf("%s [%d, +1MiB): A and B differ at the end", name, off)
			}
		}
	}
	all := map[string]*loggedLoad{"A's first clients": loadA, "B's clients": loadB, "A's clients after the switchover back": loadA2}
	for _, site := range []struct {
		name string
		read func(v int, b []byte, off int64) error
	}{{"A", readA}, {"B", readB}} {
		checkAcked(t, "at "+site.name+" at the end", "B", site.read, loadB)
		checkAcked(t, "at "+site.name+" at the end", "A after the switchover back", site.read, loadA2)
		checkDependent(t, "at "+site.name+" at the end", site.read, all)
	}

	// 7. Both run again as the plain daemons, the roles as at the start.
	if code := rej.stop(); code != 0 {
		t.Errorf("A (primary again, started as rejoin) exited %d after SIGTERM, want 0", code)
	}
	if code := rejB.stop(); code != 0 {
		t.Errorf("B (rejoined back) exited %d after SIGTERM, want 0", code)
	}
	s.startSecondary()
	s.startPrimary()
	s.waitLinked()
	w := dialNBD(t, s.cfg.Primary.NBD, names[0])
	if err := w.WriteAt(bytes.Repeat([]byte{0x5a}, 4096), volSize-4096); err != nil {
		t.Fatalf("a write to A after the restart: %v", err)
	}
	w.Close()
	s.waitConsistentAfter(time.Now())
}
