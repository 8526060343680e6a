package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/nbd"
	"duplex/workload"
)

// TestDaemonsSwitchover runs duplex switchover between the daemons under a
// load of dependent writes and logged writes over NBD: kill -9 of the
// secondary while the writes are held makes it fail, and the primary's
// writes resume; with the link down it is refused; with the secondary back,
// it hands the session over: the secondary daemon serves the volumes
// read-write in place, holding every write the primary acknowledged and a
// state the dependent writes allow; the old primary refuses writes, says
// so in its status, and a restart of it as the primary is refused, pointing
// at rejoin.
func TestDaemonsSwitchover(t *testing.T) {
	t.Parallel()
	const volSize = 16 << 20
	s := newSession(t, sessionOpts{name: "e2e-switchover", volSize: volSize, token: "e2e-switchover-token"})
	s.start()
	names := s.cfg.VolumeNames()
	load := startLoggedLoad(t, s.cfg.Primary.NBD, names, 0, 0, loggedLoadBlocks*workload.BlockSize, volSize, uint64(time.Now().UnixNano()))
	defer load.end()

	// A link slow enough that the writes held keep a backlog to ship, and
	// the secondary killed while they are held.
	if code, out, errOut := runDuplex(t, "pair", "rate", "--config", s.path, "--link", "256KiB"); code != 0 {
		t.Fatalf("pair rate: exit %d\n%s%s", code, out, errOut)
	}
	// A backlog of a second or more at that rate before the switchover:
	// with none, the rest ships before the kill and the switchover succeeds.
	waitFor(t, time.Minute, "a backlog at the primary", func() bool {
		st := s.primaryStatus()
		return st.SidefileBytes != nil && *st.SidefileBytes > 512<<10
	})
	bin := duplexBinary(t)
	var swOut, swErr bytes.Buffer
	sw := exec.Command(bin, "switchover", "--config", s.path, "--timeout", "20s")
	sw.Stdout, sw.Stderr = &swOut, &swErr
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}
	swDone := make(chan error, 1)
	go func() { swDone <- sw.Wait() }()
	waitLogLine(t, s.prim, time.Minute, "switchover: writes held")
	s.sec.kill()
	var swExit error
	select {
	case swExit = <-swDone:
	case <-time.After(2 * time.Minute):
		sw.Process.Kill()
		t.Fatal("duplex switchover did not end within 2 minutes of the secondary's kill -9")
	}
	if code := exitCode(swExit); code != 1 || !strings.Contains(swErr.String(), "writes resume") {
		t.Fatalf("switchover with the secondary killed: exit %d\nstdout: %s\nstderr: %s; want exit 1 saying the writes resume", code, swOut.String(), swErr.String())
	}
	t.Logf("switchover with the secondary killed while writes were held: %s", strings.TrimSpace(swErr.String()))
	before := load.target.acked.Load()
	eventually(t, time.Minute, "the primary's writes to resume", func() bool { return load.target.acked.Load() > before+10 })
	if st := s.primaryStatus(); st.Role != "primary" || st.SwitchedOverAt != "" {
		t.Fatalf("after a failed switchover the primary's status: role %s, switched_over_at %q", st.Role, st.SwitchedOverAt)
	}

	// The link is down: refused.
	eventually(t, time.Minute, "the primary to see the link down", func() bool { return s.primaryStatus().Link != "connected" })
	if code, out, errOut := runDuplex(t, "switchover", "--config", s.path); code != 1 || !strings.Contains(errOut, "link") {
		t.Fatalf("switchover with the link down: exit %d\nstdout: %s\nstderr: %s; want exit 1 naming the link", code, out, errOut)
	}

	s.startSecondary()
	if code, out, errOut := runDuplex(t, "pair", "rate", "--config", s.path, "--link", "0"); code != 0 {
		t.Fatalf("pair rate: exit %d\n%s%s", code, out, errOut)
	}
	s.waitLinked()
	time.Sleep(500 * time.Millisecond) // writes of the load in flight and held
	freed := watchFreedAddrs(t, s.cfg.Secondary.NBD, s.cfg.Secondary.Control)
	code, out, errOut := runDuplex(t, "switchover", "--config", s.path, "--timeout", "50s")
	if code != 0 {
		t.Fatalf("switchover: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	load.end()
	loadavg, _ := os.ReadFile("/proc/loadavg")
	t.Logf("duplex switchover under load (load average %s):\n%s", strings.TrimSpace(string(loadavg)), out)
	if !strings.Contains(out, "write pause: ") || !strings.Contains(out, "consistent as of ") {
		t.Errorf("switchover's output lacks the write pause or the consistency time:\n%s", out)
	}

	// The secondary daemon serves the volumes read-write, in place.
	eventually(t, time.Minute, "the promoted site to answer", func() bool {
		freed.check(t, "the switchover", false)
		st, err := fetchStatus(s.cfg.Secondary.Control)
		return err == nil && st.PromotedAt != ""
	})
	freed.check(t, "the switchover", true)
	nst := s.secondaryStatus()
	if nst.Role != "primary" || nst.PrimarySite != "secondary" || nst.PrimarySince == "" {
		t.Errorf("the new primary's status: role %q, primary_site %q since %q", nst.Role, nst.PrimarySite, nst.PrimarySince)
	}
	ost := s.primaryStatus()
	if ost.Role != "switched-over" || ost.SwitchedOverAt == "" || ost.PrimarySite != "secondary" || ost.PrimarySince != nst.PrimarySince {
		t.Errorf("the old primary's status: role %q, switched_over_at %q, primary_site %q since %q (the new primary says since %q)",
			ost.Role, ost.SwitchedOverAt, ost.PrimarySite, ost.PrimarySince, nst.PrimarySince)
	}
	var readers []*nbd.Client
	for _, n := range names {
		readers = append(readers, dialNBD(t, s.cfg.Secondary.NBD, n))
	}
	read := func(v int, b []byte, off int64) error { return readers[v].ReadAt(b, off) }
	acked := load.acked()
	if len(acked) == 0 {
		t.Fatal("no logged write was acknowledged")
	}
	// Slots are written round and round, each with its own data, in
	// blocks of their own: every acknowledged write is what the new
	// primary must hold.
	last := map[[2]int64][]byte{}
	for _, w := range acked {
		last[[2]int64{int64(w.vol), w.off}] = w.data
	}
	for k, want := range last {
		got := make([]byte, len(want))
		if err := readers[k[0]].ReadAt(got, k[1]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("a write acknowledged by the old primary (%d bytes at %d of %s) is missing at the new primary", len(want), k[1], names[k[0]])
		}
	}
	vs, err := workload.Check(load.lay, read)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs[:min(len(vs), 10)] {
		t.Errorf("at the new primary: %s", v)
	}
	t.Logf("%d logged writes acknowledged by the old primary, %d dependent writes; all at the new primary", len(acked), load.target.acked.Load())
	// The new primary takes writes.
	w := dialNBD(t, s.cfg.Secondary.NBD, names[0])
	if err := w.WriteAt(bytes.Repeat([]byte{0x77}, 4096), volSize-4096); err != nil {
		t.Fatalf("a write to the new primary: %v", err)
	}
	// The old primary refuses writes, and a restart of it as the primary.
	old := dialNBD(t, s.cfg.Primary.NBD, names[0])
	if err := old.WriteAt(make([]byte, 4096), 0); err == nil || !strings.Contains(err.Error(), "ESHUTDOWN") {
		t.Errorf("a write to the old primary after the switchover: %v, want ESHUTDOWN", err)
	}
	if code := s.prim.stop(); code != 0 {
		t.Fatalf("the old primary's stop: exit %d", code)
	}
	again := startDaemon(t, "primary", s.path, filepath.Join(s.dir, "primary-again.log"))
	if code := again.wait(time.Minute); code != 1 || !strings.Contains(again.log(), "duplex rejoin") {
		t.Fatalf("a restart of the old primary: exit %d, want 1 pointing at duplex rejoin:\n%s", code, logTail(again.log(), 2000))
	}
}
