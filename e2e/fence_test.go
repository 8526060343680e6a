package e2e

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDaemonsFenceSurvivesRestart is the operator's sequence: kill -9 the
// primary, `duplex recover --force` at the running secondary, write to the
// recovered secondary volume, then restart both daemons with the same config.
// The old primary must be refused, with both data generations and the way
// forward in the message, and nothing of it may reach the secondary volume.
func TestDaemonsFenceSurvivesRestart(t *testing.T) {
	t.Parallel()
	t.Run("running secondary", func(t *testing.T) { testFenceSurvivesRestart(t, true, false) })
	t.Run("running secondary killed after", func(t *testing.T) { testFenceSurvivesRestart(t, true, true) })
	t.Run("stopped secondary", func(t *testing.T) { testFenceSurvivesRestart(t, false, false) })
}

// testFenceSurvivesRestart runs recover --force at the running secondary, or
// at the stopped one. With kill, the running secondary is killed after
// recover instead of stopped: its state file is then what the fence left.
func testFenceSurvivesRestart(t *testing.T, running, kill bool) {
	s := newSession(t, sessionOpts{name: "e2e-fence", volSize: 16 << 20, token: "secret"})
	s.start()
	c := dialNBD(t, s.cfg.Primary.NBD, "vol1")
	if err := c.WriteAt(bytes.Repeat([]byte{0xaa}, 64<<10), 0); err != nil {
		t.Fatal(err)
	}
	s.waitConsistentAfter(time.Now())
	c.Close()
	s.prim.kill()

	if !running {
		s.stopSecondary()
	}
	code, out, errOut := runDuplex(t, "recover", "--force", "--config", s.path)
	if code != 0 {
		t.Fatalf("recover --force exited %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	t.Logf("recover --force:\n%s", out)
	switch {
	case running && kill:
		s.sec.kill()
	case running:
		s.stopSecondary()
	}
	// The recovered volume is used: the secondary site writes its own data.
	_, sp := s.volumePaths("vol1")
	local := bytes.Repeat([]byte{0x5c}, 64<<10)
	f, err := os.OpenFile(sp, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(local, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s.startSecondary()
	s.startPrimary()
	line := waitLogLine(t, s.sec, 30*time.Second, "refusing primary")
	t.Logf("secondary: %s", line)
	for _, w := range []string{"recover", "generation", "re-create"} {
		if !strings.Contains(line, w) {
			t.Errorf("the refusal does not say %q: %s", w, line)
		}
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if st := s.secondaryStatus(); st.Link != "disconnected" {
			t.Fatalf("the recovered secondary has link %q with the old primary after a restart", st.Link)
		}
	}
	if st := s.primaryStatus(); !strings.Contains(st.LastError, "generation") {
		t.Errorf("primary last_error %q does not say why it is refused", st.LastError)
	}
	s.prim.kill()
	s.stopSecondary()
	got := make([]byte, len(local))
	f, err = os.Open(sp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, local) {
		t.Error("the secondary volume lost the data written there after recover: the old primary wrote into it, " +
			"or the restarted secondary applied journaled groups over it again")
	}
}
