package actlog

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// TestAHungFlushKeepsOnlyItsVolumesRegionsMarked: volume a's flush hangs
// (its disk stopped answering). Sweep returns at once, every time, and
// unmarks b's idle region; a's stays marked, on disk too, as long as the
// flush has not ended, and a write to it meanwhile keeps it marked after
// the flush passes. Flush gives up on a's flush when its context ends,
// saying so. Once a's flush ends, the next Sweep takes its result.
func TestAHungFlushKeepsOnlyItsVolumesRegionsMarked(t *testing.T) {
	l, path := idleLogAB(t)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	vol := newCachedVolume(8 << 20)
	l.SetFlush(func(name string) error {
		if name != "a" {
			return nil
		}
		entered <- struct{}{}
		<-release
		return vol.flush()
	}, func(string, [][2]int64, error) { t.Error("a flush failed") })
	write := func(name string, off int64) {
		t.Helper()
		if err := l.Mark(name, off, 4096); err != nil {
			t.Fatal(err)
		}
		if name == "a" {
			vol.write(bytes.Repeat([]byte{0x5a}, 4096), off)
		}
		l.Wrote(name, off, 4096)
		l.Done(name, off, 4096)
	}
	marked := func(name string) [][2]int64 {
		t.Helper()
		marks, err := ReadMarks(nil, path)
		if err != nil {
			t.Fatal(err)
		}
		return marks[name]
	}
	write("a", 1<<20)
	write("a", 3<<20)
	write("b", 2<<20)
	if err := l.Sweep(); err != nil {
		t.Fatal(err)
	}
	<-entered
	write("a", 3<<20) // during the flush: stays marked after it
	// b's flush has ended, a's not: the next Sweep takes b's result.
	for deadline := time.Now().Add(10 * time.Second); l.FlushesUnderWay()["b"] != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("b's flush, which returns at once, still under way")
		}
	}
	for range 3 {
		if err := l.Sweep(); err != nil {
			t.Fatal(err)
		}
	}
	if got := marked("b"); len(got) != 0 {
		t.Errorf("b's idle region still marked while a's flush hangs: %v", got)
	}
	if got := marked("a"); len(got) != 2 {
		t.Errorf("a's regions marked while its flush hangs: %v, want both", got)
	}
	if d := l.FlushesUnderWay()["a"]; d <= 0 {
		t.Errorf("a's flush under way for %v", d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := l.Flush(ctx); !errors.Is(err, ErrFlushPending) {
		t.Fatalf("Flush with a's flush hung: %v, want %v", err, ErrFlushPending)
	}

	close(release)
	for deadline := time.Now().Add(10 * time.Second); len(l.FlushesUnderWay()) > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a's flush, released, still under way")
		}
	}
	if err := l.Sweep(); err != nil {
		t.Fatal(err)
	}
	if got := marked("a"); len(got) != 1 || got[0][0] != 3<<20 {
		t.Errorf("a's regions marked once its flush passed: %v, want the one written during it", got)
	}
	if err := l.Clean(); err != nil {
		t.Fatal(err)
	}
	if got := marked("a"); len(got) != 0 {
		t.Errorf("a's regions marked after a Clean that waited for a flush: %v", got)
	}
}
