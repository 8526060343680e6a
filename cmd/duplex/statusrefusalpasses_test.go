package main

import (
	"bytes"
	"strings"
	"testing"

	"duplex/control"
)

// `duplex status` of a primary the secondary refuses says, as its JSON
// does in refusal_passes, whether the refusal passes by itself (the
// secondary retries its disk, an apply is under way) or lasts until an
// operator acts: the pairs' notes and last-error read the same either way.
// Before, the text said neither.
func TestStatusSaysWhetherTheRefusalPasses(t *testing.T) {
	refused := func(passes bool) control.Status {
		return control.Status{Session: "s", Role: "primary", Link: "disconnected", RefusalPasses: passes,
			LastError: "secondary refused the session: secondary stopped at group 2: journal group 3: fsync: input/output error",
			Volumes: []control.VolumeStatus{{Name: "vol1", Subsystem: "ss1", State: "pending", SizeBytes: 1 << 20, CopiedBytes: 1 << 20,
				Note: control.RefusedNote + ", so nothing of this pair reaches it: secondary stopped at group 2 (last_error says the ways on)"}}}
	}
	for _, c := range []struct {
		name   string
		st     control.Status
		want   string
		unwant []string
	}{
		{"passing", refused(true), "REFUSED (passing: the secondary takes this primary again by itself; retrying)", []string{"lasting"}},
		{"lasting", refused(false), "REFUSED (lasting: an operator must act; last-error says the ways on)", []string{"passing"}},
		{"not refused", control.Status{Session: "s", Role: "primary", Link: "connected",
			Volumes: []control.VolumeStatus{{Name: "vol1", Subsystem: "ss1", State: "duplex", SizeBytes: 1 << 20, CopiedBytes: 1 << 20}}},
			"", []string{"REFUSED", "passing", "lasting"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			printStatus(&b, c.st)
			if c.want != "" && !strings.Contains(b.String(), "  "+c.want+"\n") {
				t.Errorf("human status, want the line %q:\n%s", c.want, b.String())
			}
			for _, u := range c.unwant {
				if strings.Contains(b.String(), u) {
					t.Errorf("human status says %q:\n%s", u, b.String())
				}
			}
		})
	}
}
