package site

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// A switchover with a pair deleted: the primary goes on serving the
// volume, writes to it are acknowledged and no longer shipped, yet
// allDuplex passes over deleted pairs, so the switchover goes through; the
// other site, promoted, serves its stale copy of the volume read-write,
// and duplex switchover prints that it holds every write acknowledged
// here. The writes acknowledged to that volume
// since its deletion are at the old primary only (and a rejoin there
// copies the promoted site's regions over them).
func TestSwitchoverWithADeletedPairLosesItsWrites(t *testing.T) {
	cfg := switchoverConfig(t)
	s := startSecondaryForSwitchover(t, cfg)
	p, _ := startPrimaryForSwitchover(t, cfg)
	waitDuplex(t, p)
	vols := cfg.VolumeNames()
	gone := vols[0]
	if _, err := p.pairs.Delete(gone); err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{0xa5}, 4096)
	if err := p.Write(context.Background(), gone, want, 0); err != nil {
		t.Fatalf("a write to %s after its pair was deleted: %v", gone, err)
	}
	res, err := p.Switchover(context.Background(), time.Minute)
	if err != nil {
		t.Logf("switchover refused with pair %s deleted: %v", gone, err)
		return
	}
	var prom *Promoted
	select {
	case prom = <-s.promotedUp:
	case <-s.done:
		t.Fatalf("the secondary's Run ended with %v, and no promoted site serves", s.err)
	}
	got := make([]byte, len(want))
	if err := prom.ReadAt(gone, got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("switched over (promoted at %s, group %d) with pair %s deleted: the new primary serves %s read-write without the write "+
			"acknowledged to it before the switchover, where the switchover's answer says it holds every write acknowledged here",
			res.PromotedAt, res.Group, gone, gone)
	}
}
