package e2e

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"duplex/config"
)

// TestDaemonsStopWithAWriteHeldBesideSuspensionsIsNotClean: a write
// acknowledged while every pair was duplex and the secondary gone, held for
// it, then every pair suspended: the primary's stop with the link still down
// holds more than the pairs' markers, so it does not end at once and clean
// (which would have the next start copy only the suspended pairs' changed
// regions, without the write's). After both sites run again and the pairs
// are resumed, the secondary's images are the primary's, the write among
// them.
func TestDaemonsStopWithAWriteHeldBesideSuspensionsIsNotClean(t *testing.T) {
	t.Parallel()
	const token = "e2e-markersonly-token"
	s := newSession(t, sessionOpts{name: "e2e-markersonly", volSize: 4 * config.MiB, token: token})
	s.start()
	s.sec.kill()
	eventually(t, 30*time.Second, "the primary to see the link down", func() bool { return s.primaryStatus().Link != "connected" })
	names := s.cfg.VolumeNames()
	c := dialNBD(t, s.cfg.Primary.NBD, names[1])
	held := bytes.Repeat([]byte{0x6d}, 4096)
	if err := c.WriteAt(held, 3<<20); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if code, out, errs := runDuplex(t, "pair", "suspend", "--all", "--config", s.path); code != 0 {
		t.Fatalf("pair suspend --all with the secondary gone: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	eventually(t, 30*time.Second, "every pair suspended", func() bool {
		st := s.primaryStatus()
		for _, v := range st.Volumes {
			if v.State != "suspended" {
				return false
			}
		}
		return len(st.Volumes) == len(names)
	})
	code := s.prim.stop()
	if log := s.prim.log(); code == 0 || strings.Contains(log, "stopping without waiting for the secondary") {
		t.Errorf("the primary's stop with a write held beside the suspensions: exit %d, log:\n%s\nwant it not to end clean without shipping the write",
			code, logTail(log, 3000))
	}

	s.startSecondary()
	s.restartPrimary()
	if code, out, errs := runDuplex(t, "pair", "resume", "--all", "--wait", "--config", s.path); code != 0 {
		t.Fatalf("pair resume --all --wait: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	s.drainPrimary()
	s.stopSecondary()
	s.assertImagesEqual()
}
