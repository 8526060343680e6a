package subsystem

import (
	"context"
	"testing"
	"time"

	"duplex/bitmap"
	"duplex/internal/testhold"
	"duplex/timer"
)

// A suspended volume's change bitmap is read while a write of another
// volume waits for its stamp: the pair manager reads it under its own lock,
// which status takes too, and a write waiting for the timer's mark on a
// loaded disk (seconds) held status past its clients' timeouts.
func TestTrackingAnswersWhileAWriteWaitsForItsStamp(t *testing.T) {
	f := newFixture(t, 1<<20, "a", "b")
	c := &testhold.Clock{}
	ss := New("ss1", timer.NewWithClock(c.Now), f.side, f.vols, []string{"a", "b"})
	bm := bitmap.New(volSize, 4096)
	ss.Suspend("a", bm)
	c.Arm()
	wrote := make(chan error, 1)
	go func() { wrote <- ss.Write(context.Background(), "b", []byte("held"), 0) }()
	<-c.Entered()
	read := make(chan *bitmap.Bitmap, 1)
	go func() { read <- ss.Tracking("a") }()
	// The write is held until the bitmap is read: a read that waits for
	// the write never returns; the bound only ends the test.
	select {
	case got := <-read:
		if got != bm {
			t.Errorf("Tracking(a) = %p, want the suspension's bitmap %p", got, bm)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("Tracking(a) did not answer in 30s while a write of b waited for its stamp")
	}
	c.Release()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// Tracking answers while a write of the suspended volume itself waits for
// its stamp, with the volume's bitmap itself, not a copy: the write's mark
// comes in it, before the write reaches the volume, once the write goes on.
// So a save or a resume reading it without the ordering lock misses no
// change the volume holds: one not marked yet is not on the volume yet.
func TestTrackingWhileTheVolumesWriteWaitsForItsStamp(t *testing.T) {
	f := newFixture(t, 1<<20, "a")
	c := &testhold.Clock{}
	ss := New("ss1", timer.NewWithClock(c.Now), f.side, f.vols, []string{"a"})
	bm := bitmap.New(volSize, 4096)
	ss.Suspend("a", bm)
	c.Arm()
	const off = 8 << 10
	wrote := make(chan error, 1)
	go func() { wrote <- ss.Write(context.Background(), "a", []byte("held"), off) }()
	<-c.Entered()
	read := make(chan *bitmap.Bitmap, 1)
	go func() { read <- ss.Tracking("a") }()
	var got *bitmap.Bitmap
	select {
	case got = <-read:
	case <-time.After(30 * time.Second):
		t.Errorf("Tracking(a) did not answer in 30s while a write of a waited for its stamp")
	}
	c.Release()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if got == nil {
		return
	}
	if got != bm {
		t.Fatalf("Tracking(a) = %p, want the suspension's bitmap %p", got, bm)
	}
	if r, _, _, ok := got.Next(0); !ok || r != off/4096 {
		t.Errorf("the bitmap Tracking returned does not mark the write once it is done")
	}
}
