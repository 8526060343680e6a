package subsystem

import (
	"context"
	"testing"

	"duplex/bitmap"
)

// TestAFailedWriteIsReported: the volume fails a captured write (its file
// closed under it). The write returns the error, and FailedWrites reports
// it once, with its range, for the pair manager; a suspended volume's
// failed write, in its bitmap already, is not reported.
func TestAFailedWriteIsReported(t *testing.T) {
	f := newFixture(t, 1<<20, "a", "b")
	ctx := context.Background()
	f.ss.Suspend("b", bitmap.New(volSize, 4096))
	for _, v := range f.vols {
		v.Close()
	}
	if err := f.ss.Write(ctx, "a", make([]byte, 512), 4096); err == nil {
		t.Fatal("a write its volume failed returned no error")
	}
	if err := f.ss.Write(ctx, "b", make([]byte, 512), 4096); err == nil {
		t.Fatal("a suspended volume's write its volume failed returned no error")
	}
	fws := f.ss.FailedWrites()
	if len(fws) != 1 || fws[0].Volume != "a" || fws[0].Offset != 4096 || fws[0].Length != 512 || fws[0].Err == nil {
		t.Fatalf("failed writes reported: %+v, want a's [4096, +512) with its error", fws)
	}
	if fws := f.ss.FailedWrites(); len(fws) != 0 {
		t.Fatalf("failed writes reported again: %+v", fws)
	}
}
