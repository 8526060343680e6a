package secondary

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/history"
)

// A spilled view (a failover drill's) past the memory one view may hold
// is given up for its index in memory, not for the bytes changed, which
// its scratch file holds: the reason its drill's status shows says so,
// and does not ask to reconnect, which a drill cannot.
func TestSpilledViewGivenUpForItsIndex(t *testing.T) {
	dir := t.TempDir()
	fillVolume(t, dir)
	gate := newTestGate(0)
	r := openGateRigWith(t, dir, gate, historyOf(dir))
	defer r.close(t)
	r.send(t, 1)
	gate.set(int64(time.Millisecond))
	r.waitApplied(t, 1)
	r.sec.rviews.maxView = 4 << 10
	sc, err := history.CreateScratch(filepath.Join(dir, "drill"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	v, err := r.sec.PinSpilled(sc)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	r.send(t, 2)
	gate.set(2 * int64(time.Millisecond))
	r.waitApplied(t, 2)
	err = v.Gone()
	if !errors.Is(err, ErrViewGone) || !strings.Contains(err.Error(), "index in memory") || strings.Contains(err.Error(), "reconnect") {
		t.Fatalf("a spilled view past its bound: %v; want it given up for its index in memory", err)
	}
}
