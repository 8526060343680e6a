package e2e

import (
	"bytes"
	"testing"
	"time"

	"duplex/control"
)

// TestDaemonsSuspensionLostAtAKillIsNotClaimed: a pair suspended while a
// write to it waits in the sidefile for a secondary that is down, then kill
// -9 of the primary: the write and the suspension die with the process, and
// the secondary holds the volume as of what it journaled before. The
// restarted primary, linked again and going on with its other volumes, must
// never claim the volume consistent as of a time at or after that write.
func TestDaemonsSuspensionLostAtAKillIsNotClaimed(t *testing.T) {
	t.Parallel()
	s := newSession(t, sessionOpts{name: "e2e-suspkill", volSize: 4 << 20, token: "secret"})
	s.start()
	c := dialNBD(t, s.cfg.Primary.NBD, "vol3")
	if err := c.WriteAt(bytes.Repeat([]byte{0x5a}, 8192), 0); err != nil {
		t.Fatal(err)
	}
	s.waitConsistentAfter(time.Now())
	s.stopSecondary()
	wrote := time.Now()
	if err := c.WriteAt(bytes.Repeat([]byte{0xa5}, 8192), 1<<20); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if code, out, errOut := runDuplex(t, "pair", "suspend", "vol3", "--config", s.path); code != 0 {
		t.Fatalf("pair suspend exited %d: %s%s", code, out, errOut)
	}
	s.prim.kill()
	s.startSecondary()
	s.startPrimary()

	vol3 := func(st control.Status) control.VolumeStatus {
		for _, v := range st.Volumes {
			if v.Name == "vol3" {
				return v
			}
		}
		t.Fatalf("no vol3 in status %+v", st)
		return control.VolumeStatus{}
	}
	eventually(t, 60*time.Second, "the restarted primary linked", func() bool {
		return s.primaryStatus().Link == "connected"
	})
	// Groups of the other volumes go on, and their acknowledgements pass
	// the time of the lost suspension.
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		v := vol3(s.primaryStatus())
		if v.ConsistencyTime == "" {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, v.ConsistencyTime)
		if err != nil {
			t.Fatal(err)
		}
		if !at.Before(wrote) {
			t.Fatalf("after the kill, the primary claims vol3 (%s) consistent as of %s, but the secondary never got the write made at %s nor the suspension; "+
				"the secondary says of vol3: %+v", v.State, v.ConsistencyTime, wrote.UTC().Format(time.RFC3339Nano), vol3(s.secondaryStatus()))
		}
	}
}
