package e2e

import (
	"strings"
	"testing"
	"time"

	"duplex/site"
)

// TestRecoverReportsEachVolume: with one volume duplex, one suspended and
// one in its very first initial copy, the secondary's status (which recover
// prints) says the truth for each, and the running secondary and the same
// secondary reopened after a stop report the same durable time and group.
func TestRecoverReportsEachVolume(t *testing.T) {
	t.Parallel()
	s := startDuplexOps(t, site.SecondaryOptions{})
	buf := make([]byte, 4096)
	for i := range 64 {
		buf[0] = byte(i)
		for _, name := range s.cfg.VolumeNames() {
			if err := s.prim.Write(t.Context(), name, buf, int64(i)*4096); err != nil {
				t.Fatal(err)
			}
		}
	}
	// vol3 holds data throughout, so its copy is 1 MiB of data, not holes
	// sent as a few zeroes updates.
	big := make([]byte, 64<<10)
	for i := range duplexOpsVolSize / len(big) {
		big[0] = byte(i)
		if err := s.prim.Write(t.Context(), "vol3", big, int64(i*len(big))); err != nil {
			t.Fatal(err)
		}
	}
	pm := s.prim.Pairs()
	if err := pm.Suspend("vol2"); err != nil {
		t.Fatal(err)
	}
	// A volume added again starts its very first copy; suspended at once,
	// with the link down, the copy (1 MiB through a 256 KiB sidefile) cannot
	// have ended. (With the link up a copy can end before the suspension,
	// and then the secondary rightly has vol3 as of it.)
	s.net.SetDown(true)
	if _, err := pm.Delete("vol3"); err != nil {
		t.Fatal(err)
	}
	if err := pm.Add("vol3"); err != nil {
		t.Fatal(err)
	}
	if err := pm.Suspend("vol3"); err != nil {
		t.Fatal(err)
	}
	s.net.SetDown(false)
	for i := range 64 {
		buf[0] = byte(i + 100)
		if err := s.prim.Write(t.Context(), "vol1", buf, int64(i)*4096); err != nil {
			t.Fatal(err)
		}
	}
	s.stopPrimary()
	waitFor(t, 30*time.Second, "the last group applied", func() bool {
		return s.sec.Replica().Stats().Group >= s.prim.Mover().Stats().Acked.Group
	})
	// Idle groups advance the consistency time in memory between the
	// groups that are journaled: let some pass.
	time.Sleep(300 * time.Millisecond)

	running := s.sec.Status()
	want := map[string]string{
		"vol1": "consistent as of " + running.ConsistencyTime + " (group ",
		"vol2": "consistent as of its suspension time ",
		"vol3": "not consistent: initial copy not complete",
		"vol4": "consistent as of " + running.ConsistencyTime + " (group ",
	}
	check := func(which string, vols map[string]string) {
		for name, w := range want {
			if !strings.HasPrefix(vols[name], w) {
				t.Errorf("%s: %s: %q, want it to begin %q", which, name, vols[name], w)
			}
		}
	}
	rv := map[string]string{}
	for _, v := range running.Volumes {
		rv[v.Name] = v.Consistency
	}
	check("running", rv)
	if strings.Contains(rv["vol2"], running.ConsistencyTime) {
		t.Errorf("vol2 suspended long before the last group, yet reported as of the session's time: %q", rv["vol2"])
	}

	s.stopSecondary()
	off, err := site.OpenSecondary(s.cfg, quietLogger(), site.SecondaryOptions{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	stopped := off.Status()
	if stopped.ConsistencyTime != running.ConsistencyTime || *stopped.Group != *running.Group {
		t.Errorf("running secondary reported %s (group %d), the same secondary stopped %s (group %d)",
			running.ConsistencyTime, *running.Group, stopped.ConsistencyTime, *stopped.Group)
	}
	sv := map[string]string{}
	for _, v := range stopped.Volumes {
		sv[v.Name] = v.Consistency
	}
	check("stopped", sv)
	for name := range want {
		if sv[name] != rv[name] {
			t.Errorf("%s: running %q, stopped %q", name, rv[name], sv[name])
		}
	}
	t.Logf("running: %v\nstopped: %v", rv, sv)
}
