package subsystem

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// A burst's 1 MiB payloads are read by the NBD server straight into buffers
// NewPayload hands out, which the sidefile then keeps (WriteOwned, no
// copy). A buffer handed out again while the sidefile still holds its
// update would put the later write's bytes into the earlier update, sent to
// the secondary under the earlier timestamp; one handed out again after the
// mover gave it back (Recycle, once the secondary journaled it) but before
// its own pwrite read it would put them on the primary volume in its place.
// Either way the sites would disagree for good.
func TestABurstsPayloadIsNotHandedOutAgainWhileItsUpdateOrItsWriteNeedsIt(t *testing.T) {
	const mib = 1 << 20
	f := bigFixture(t, 64<<20, 8*mib)
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
	a := f.ss.NewPayload(mib)
	copy(a, bytes.Repeat([]byte{'A'}, mib))
	done := make(chan error, 1)
	go func() { done <- f.ss.WriteOwned(ctx, "v0", a, 0) }()
	select {
	case <-captured:
	case <-time.After(20 * time.Second):
		t.Fatal("the write was never captured")
	}

	// Held by the sidefile: no payload handed out meanwhile is its buffer.
	for i := 1; i <= 3; i++ {
		p := f.ss.NewPayload(mib)
		if &p[0] == &a[0] {
			t.Fatal("a payload buffer was handed out again while the sidefile held its update")
		}
		copy(p, bytes.Repeat([]byte{'0' + byte(i)}, mib))
		if err := f.ss.WriteOwned(ctx, "v0", p, int64(i)*mib); err != nil {
			t.Fatal(err)
		}
	}
	ups, _, _ := f.ss.Drain()
	if len(ups) != 4 || !bytes.Equal(ups[0].Data, bytes.Repeat([]byte{'A'}, mib)) {
		t.Fatalf("drained %d updates, the first holding %q...; want 4, the first all 'A'", len(ups), ups[0].Data[:8])
	}

	// Journaled and given back, but its pwrite has not read it yet.
	f.ss.Recycle(ups)
	for i := 4; i <= 7; i++ {
		p := f.ss.NewPayload(mib)
		if &p[0] == &a[0] {
			t.Fatal("a payload buffer was handed out again before its write reached the volume")
		}
		copy(p, bytes.Repeat([]byte{'0' + byte(i)}, mib))
		if err := f.ss.WriteOwned(ctx, "v0", p, int64(i)*mib); err != nil {
			t.Fatal(err)
		}
	}
	close(proceed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := readVol(t, f.vols["v0"], 0, mib); !bytes.Equal(got, bytes.Repeat([]byte{'A'}, mib)) {
		t.Fatalf("the primary volume holds %q... where the held write of 'A' went", got[:8])
	}
	for i := 1; i <= 7; i++ {
		if got := readVol(t, f.vols["v0"], int64(i)*mib, mib); !bytes.Equal(got, bytes.Repeat([]byte{'0' + byte(i)}, mib)) {
			t.Fatalf("MiB %d of the volume holds %q..., want all %q", i, got[:8], '0'+byte(i))
		}
	}

	// Once on the volume its buffer goes back to the pool, and a later
	// payload takes it again.
	later, _, _ := f.ss.Drain()
	f.ss.Recycle(later)
	seen := false
	for range 8 {
		if p := f.ss.NewPayload(mib); &p[0] == &a[0] {
			seen = true
		}
	}
	if !seen {
		t.Error("the buffer of a write given back before it reached the volume was never handed out again once it had")
	}
}
