package subsystem

import (
	"context"
	"testing"
)

// TestABurstsLargeWriteIsNotChecksummedOnItsWritersPath: a large write
// captured while the sidefile has room for a burst (below the share of its
// unpaced bytes from which the mover sends at once) leaves its checksum to
// the mover's encoding, after the burst, off the CPU the burst's writes
// need; one captured past that share, whose record set goes within an
// interval, is checksummed at capture while its bytes are in the cache.
func TestABurstsLargeWriteIsNotChecksummedOnItsWritersPath(t *testing.T) {
	f := bigFixture(t, 64<<20, 32<<20)
	ctx := context.Background()
	if err := f.ss.Write(ctx, "v0", pattern(1<<20), 0); err != nil {
		t.Fatal(err)
	}
	us, _, _ := f.ss.Drain()
	if len(us) != 1 || us[0].Summed() {
		t.Fatalf("a 1 MiB write into an empty sidefile: %d updates, summed at capture %v; want one, not summed", len(us), len(us) == 1 && us[0].Summed())
	}
	releaseAll(f.side, us)

	// The sidefile past the share: a stream the mover sends as it comes.
	held := int64(captureSumFill*float64(f.side.Unpaced())) + 1
	if _, err := f.side.Reserve(ctx, held); err != nil {
		t.Fatal(err)
	}
	defer f.side.Release(held)
	if err := f.ss.Write(ctx, "v0", pattern(1<<20), 1<<20); err != nil {
		t.Fatal(err)
	}
	us, _, _ = f.ss.Drain()
	if len(us) != 1 || !us[0].Summed() {
		t.Fatalf("a 1 MiB write into a sidefile past %.0f %% of its unpaced bytes: %d updates, summed at capture %v; want one, summed",
			100*captureSumFill, len(us), len(us) == 1 && us[0].Summed())
	}
	releaseAll(f.side, us)
}
