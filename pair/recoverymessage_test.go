package pair

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// A primary restarted after kill -9 with more logged regions than half a
// sidefile copies them as a resync, announced as one (not an inconsistent
// one): the secondary holds the groups back until the resync's end and
// stays consistent as of its last point before the crash throughout. The
// log must say so, not tell the operator that the secondary copy is
// inconsistent until done, which would have him treat a consistent copy as
// lost for disaster recovery while the resync runs.
func TestRecoveryResyncLogSaysTheSecondaryStaysConsistent(t *testing.T) {
	withIdle(t, 0)
	// A 1 MiB sidefile: the two logged regions to copy are more than half.
	r := newRig(t, 8*twinRegion, 1<<20, "a")
	r.settle()
	r.saveAndClean()
	r.mv.setConnected(false)
	r.write("a", 2*twinRegion, 4096)
	r.write("a", 5*twinRegion, 4096)
	var buf bytes.Buffer
	r.opts.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	r.crash()
	p := r.pair("a")
	// Suspended while the secondary's journal room is not yet checked,
	// then pending: either way the regions are copied as a resync.
	if p.State != Pending && p.State != Suspended {
		t.Fatalf("after the crash a is %s, want pending or suspended for the room (the regions copied as a resync)", p.State)
	}
	if p.Inconsistent {
		t.Fatalf("the recovery's resync is an inconsistent one; want a resync the secondary holds")
	}
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.Contains(line, "activity log") && strings.Contains(line, "inconsistent") {
			t.Errorf("the log says the secondary is inconsistent during a resync it holds consistent: %s", line)
		}
	}
}
