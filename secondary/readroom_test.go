package secondary

import "testing"

// While the receiver cannot go on (the applier stalled, the journal slow),
// the reader takes frames off the link only up to its byte bound (twice the
// largest frame, plus the one frame it admits under it), not a fixed count
// of frames whatever their size: the rest stay on the link, holding the
// primary back. Once the receiver goes on, every group is received, in
// order.
func TestTheReaderHoldsABoundedAmountWhileTheReceiverWaits(t *testing.T) {
	const maxFrame = 16 << 10
	b := newBatchRig(t, func(c *Config) { c.MaxFrame = maxFrame })
	b.stallApplier()
	const last = 60 // about 240 KiB of frames, over 60 frames
	b.readAhead(last)
	b.sec.mu.Lock()
	room := b.sec.readRoom
	b.sec.mu.Unlock()
	room.mu.Lock()
	peak, limit := room.peak, room.limit
	room.mu.Unlock()
	// Released before any check fails, so the rig can stop.
	b.release()
	if limit != 2*maxFrame {
		t.Fatalf("read-ahead bound %d, want twice the largest frame (%d)", limit, 2*maxFrame)
	}
	if peak > limit+maxFrame {
		t.Fatalf("the reader held %d bytes of frames while the receiver waited, over its bound of %d and one frame", peak, limit)
	}
	b.journaled(last)
	waitFor(t, "groups applied", func() bool { return b.sec.Position().Group >= last })
	b.holds(last, last)
}
