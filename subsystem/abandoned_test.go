package subsystem

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"duplex/bitmap"
)

// TestAWriteDoesNotWaitForACopyGivenUp: a write waits for an earlier copy
// of its region to read its data, so that the copy holds the region as of
// its own timestamp. A copy whose read hangs and that a drain gave up never
// ships: its data is the read's alone, and the writes to its region (its
// pair's, suspended for it) no longer wait for a read that may hang for as
// long as the disk is stuck. The read, when it ends at last, changes
// nothing: the volume holds the write.
func TestAWriteDoesNotWaitForACopyGivenUp(t *testing.T) {
	f := newFixture(t, 1<<20)
	if err := f.vols["v0"].WriteAt(bytes.Repeat([]byte{0x11}, 4096), 0); err != nil {
		t.Fatal(err) // not a hole: the copy reads it
	}
	reading, hung := make(chan struct{}), make(chan struct{})
	f.ss.SetBeforeCopyRead(func(string, int64, int64) {
		close(reading)
		<-hung
	})
	released := false
	release := func() {
		if !released {
			released = true
			close(hung)
		}
	}
	defer release()
	copied := make(chan error, 1)
	go func() { copied <- f.ss.Copy(context.Background(), "v0", 0, 4096) }()
	<-reading
	// A write already waiting for the copy when it is given up.
	written := make(chan error, 2)
	go func() { written <- f.ss.Write(context.Background(), "v0", bytes.Repeat([]byte{0x22}, 4096), 0) }()
	waitFor(t, "the write to wait for the copy", func() bool {
		f.ss.mu.Lock()
		defer f.ss.mu.Unlock()
		return len(f.ss.inflight) == 2
	})
	ups, _, _, abandoned := f.ss.DrainWithin(10 * time.Millisecond)
	if len(abandoned) != 1 || len(ups) != 1 {
		t.Fatalf("drain: %d updates, %d copies given up, want the write and the copy given up", len(ups), len(abandoned))
	}
	releaseAll(f.side, ups)
	f.ss.Suspend("v0", bitmap.New(volSize, 4096))
	// And one made once it is given up, its pair suspended.
	go func() { written <- f.ss.Write(context.Background(), "v0", bytes.Repeat([]byte{0x33}, 4096), 0) }()
	for range 2 {
		select {
		case err := <-written:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a write to the region of a copy given up waits for its hung read")
		}
	}
	release()
	if err := <-copied; !errors.Is(err, ErrCopyAbandoned) {
		t.Fatalf("the copy given up returned %v, want ErrCopyAbandoned", err)
	}
	if got := readVol(t, f.vols["v0"], 0, 4096); !bytes.Equal(got, bytes.Repeat([]byte{0x33}, 4096)) {
		t.Fatalf("the volume holds %x..., want the last write", got[:8])
	}
	if us, _, _ := f.ss.Drain(); len(us) != 0 {
		t.Fatalf("captured %d updates after the drain, want none (the pair suspended)", len(us))
	}
}
