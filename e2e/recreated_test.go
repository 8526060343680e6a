package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/pair"
)

// TestRecreatedSecondaryNotConsistentAfterResync: a secondary re-created
// (its disks replaced: empty images, no journal, no state) under a primary
// whose pairs are duplex follows the primary's data generation and gets the
// stream from there on; it reports every volume not consistent, as it holds
// no copy of any. A suspend and resume of a pair (or a link cut long enough
// to suspend the session) then resyncs only the regions written while
// suspended. The secondary must not report that volume consistent after the
// resync: its copy holds those regions and the writes since it joined, and
// nothing of the volume from before.
func TestRecreatedSecondaryNotConsistentAfterResync(t *testing.T) {
	t.Parallel()
	const volSize = 1 << 20
	cfg := newOpsConfig(t, volSize, 256<<10, time.Minute)
	s := startOps(t, cfg)
	for _, name := range cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	old := bytes.Repeat([]byte{0x11}, 4096)
	for i := range 16 {
		if err := s.prim.Write(t.Context(), "vol1", old, int64(i)*4096); err != nil {
			t.Fatal(err)
		}
	}
	s.stopPrimary()
	s.stopSecondary()
	// The secondary site's disks are replaced.
	if err := os.RemoveAll(filepath.Dir(cfg.Secondary.Journal)); err != nil {
		t.Fatal(err)
	}
	s.net = newMemNet()
	s.startSecondary()
	s.startPrimary()
	if err := s.prim.Write(t.Context(), "vol2", old, 0); err != nil {
		t.Fatal(err)
	}
	note := func(vol string) string {
		for _, v := range s.sec.Status().Volumes {
			if v.Name == vol {
				return v.Consistency
			}
		}
		return ""
	}
	waitFor(t, 30*time.Second, "the re-created secondary taking the stream", func() bool {
		return s.sec.Replica().Stats().Group > 0
	})
	if n := note("vol1"); strings.HasPrefix(n, "consistent") {
		t.Fatalf("re-created secondary reports vol1 %q before any copy", n)
	}
	pm := s.prim.Pairs()
	if err := pm.Suspend("vol1"); err != nil {
		t.Fatal(err)
	}
	if err := s.prim.Write(t.Context(), "vol1", bytes.Repeat([]byte{0x22}, 4096), 200*4096); err != nil {
		t.Fatal(err)
	}
	if err := pm.Resume("vol1"); err != nil {
		t.Fatal(err)
	}
	s.waitState("vol1", pair.Duplex, time.Minute)
	acked := s.prim.Mover().Stats().Acked.Group
	waitFor(t, 30*time.Second, "the resync's end applied", func() bool { return s.sec.Replica().Stats().Group >= acked })
	n := note("vol1")
	got := make([]byte, 4096)
	if err := s.sec.ReadAt("vol1", got, 0); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(n, "a full copy is needed") {
		t.Errorf("the re-created secondary reports vol1 %q: it does not say a full copy is needed", n)
	}
	if strings.HasPrefix(n, "consistent") && !bytes.Equal(got, old) {
		t.Errorf("the re-created secondary reports vol1 %q after a resync of the one block written while suspended, "+
			"but its block 0 holds %#x where the primary has had %#x since before the secondary was re-created", n, got[0], old[0])
	}
}
