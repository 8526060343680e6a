package e2e

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"duplex/control"
)

// TestDaemonsAddedPairClaimsNoTimeUntilCopied: a pair deleted, then added
// again, is in its first copy: the secondary holds no consistent copy of it
// until the copy ends (the copy lands there in region order, over the copy
// its deletion left). `duplex status --json` at the primary must show no
// consistency_time for it while it is not duplex, not the time it kept from
// its deletion; once the copy is done it shows one again.
func TestDaemonsAddedPairClaimsNoTimeUntilCopied(t *testing.T) {
	t.Parallel()
	s := newSession(t, sessionOpts{name: "e2e-readd", volSize: 4 << 20, token: "secret"})
	s.start()
	c := dialNBD(t, s.cfg.Primary.NBD, "vol3")
	if err := c.WriteAt(bytes.Repeat([]byte{0x5a}, 8192), 0); err != nil {
		t.Fatal(err)
	}
	s.waitConsistentAfter(time.Now())
	// With the secondary down the first copy cannot end: the pair stays
	// pending (or suspended by the session) for as long as the test looks.
	s.stopSecondary()
	if code, out, errOut := runDuplex(t, "pair", "delete", "vol3", "--config", s.path); code != 0 {
		t.Fatalf("pair delete exited %d: %s%s", code, out, errOut)
	} else {
		t.Logf("pair delete: %s", bytes.TrimSpace([]byte(out)))
	}
	if code, out, errOut := runDuplex(t, "pair", "add", "vol3", "--config", s.path); code != 0 {
		t.Fatalf("pair add exited %d: %s%s", code, out, errOut)
	}
	vol3 := func() control.VolumeStatus {
		t.Helper()
		code, out, errOut := runDuplex(t, "status", "--addr", s.cfg.Primary.Control, "--json")
		if code != 0 {
			t.Fatalf("duplex status exited %d: %s", code, errOut)
		}
		var st control.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		for _, v := range st.Volumes {
			if v.Name == "vol3" {
				return v
			}
		}
		t.Fatalf("primary status has no vol3:\n%s", out)
		return control.VolumeStatus{}
	}
	if v := vol3(); v.State == "duplex" || v.ConsistencyTime != "" {
		t.Errorf("added again with the secondary down, vol3 is %s, consistent as of %q: want not duplex, with no consistency_time "+
			"(the secondary holds no consistent copy of a volume in its first copy)", v.State, v.ConsistencyTime)
	}

	s.startSecondary()
	s.waitLinked()
	if v := vol3(); v.ConsistencyTime == "" {
		t.Errorf("first copy done, vol3 is %s with no consistency_time", v.State)
	}
}
