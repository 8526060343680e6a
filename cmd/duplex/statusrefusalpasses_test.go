package main

import (
	"bytes"
	"encoding/json"
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

// TestStatusSaysARefusalWithEveryPairSuspended: a primary refused until an
// operator acts whose pairs are all suspended (by hand, or by the session
// once its sidefile filled while refused) has no pair whose note says the
// refusal; its status says refused all the same, and duplex status prints
// the REFUSED line. Before, none: only last-error told of it, and of a
// passing refusal the line is printed whatever the pairs' states.
func TestStatusSaysARefusalWithEveryPairSuspended(t *testing.T) {
	// As the primary answers: the JSON.
	const answer = `{"session":"s","role":"primary","link":"suspended","refused":true,` +
		`"last_error":"secondary refused the session: the secondary has no record of this primary's pair state",` +
		`"volumes":[{"name":"vol1","subsystem":"ss1","state":"suspended","size_bytes":1048576,"copied_bytes":1048576}]}`
	var st control.Status
	if err := json.Unmarshal([]byte(answer), &st); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	printStatus(&b, st)
	if want := "  REFUSED (lasting: an operator must act; last-error says the ways on)\n"; !strings.Contains(b.String(), want) {
		t.Errorf("human status of a refused primary, every pair suspended, want the line %q:\n%s", want, b.String())
	}
}
