package subsystem

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// A write's update can be journaled at the secondary, and its buffer handed
// back, before the write's own pwrite has read it: the pwrite waits behind
// an overlapping write, or the disk stalls. A later write that reused the
// buffer then would put its data, not this write's, on the primary volume,
// and the primary and the secondary would disagree for good.
func TestRecycleKeepsTheBufferOfAWriteNotYetOnTheVolume(t *testing.T) {
	f := newFixture(t, 1<<20)
	ctx := context.Background()
	captured, proceed := make(chan struct{}), make(chan struct{})
	first := true
	f.ss.beforeVolumeWrite = func(string) {
		if first {
			first = false
			close(captured)
			<-proceed
		}
	}
	a := bytes.Repeat([]byte{'A'}, 4096)
	done := make(chan error, 1)
	go func() { done <- f.ss.Write(ctx, "v0", a, 0) }()
	select {
	case <-captured:
	case <-time.After(20 * time.Second):
		t.Fatal("the write was never captured")
	}
	// The mover drains it, the secondary journals it, the mover hands its
	// buffer back; then a later write takes a buffer.
	ups, _, _ := f.ss.Drain()
	if len(ups) != 1 {
		t.Fatalf("drained %d updates, want the write", len(ups))
	}
	f.ss.Recycle(ups)
	b := bytes.Repeat([]byte{'B'}, 4096)
	if err := f.ss.Write(ctx, "v0", b, 8192); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := readVol(t, f.vols["v0"], 0, 4096); !bytes.Equal(got, a) {
		t.Fatalf("the primary volume holds %q... where the write of %q... went: its buffer was reused before its pwrite", got[:8], a[:8])
	}
	if got := readVol(t, f.vols["v0"], 8192, 4096); !bytes.Equal(got, b) {
		t.Fatalf("the later write left %q... on the volume, want %q...", got[:8], b[:8])
	}

	// Once written, the buffer is taken back: the next write reuses it.
	c := bytes.Repeat([]byte{'C'}, 4096)
	if err := f.ss.Write(ctx, "v0", c, 4096); err != nil {
		t.Fatal(err)
	}
	ups2, _, _ := f.ss.Drain()
	if len(ups2) != 2 {
		t.Fatalf("drained %d updates, want the two later writes", len(ups2))
	}
	if &ups2[1].Data[0] != &ups[0].Data[0] {
		t.Error("the buffer of a write handed back before it reached the volume was not reused once it had")
	}
	if !bytes.Equal(ups2[1].Data, c) {
		t.Errorf("the update of the last write holds %q..., want %q...", ups2[1].Data[:8], c[:8])
	}
}
