package actlog

import (
	"testing"
	"time"
)

// TestFlushEndedIsSignalledOnceTheFlushsResultIsSet: no signal while a
// flush Sweep started is under way; once it ends, FlushEnded is signalled,
// and TakeEnded, called on the signal with no other wait, takes the
// result and unmarks the region, starting no flush for the region marked
// meanwhile.
func TestFlushEndedIsSignalledOnceTheFlushsResultIsSet(t *testing.T) {
	l, _ := idleLogAB(t)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	l.SetFlush(func(string) error {
		entered <- struct{}{}
		<-release
		return nil
	}, func(string, [][2]int64, error) { t.Error("a flush failed") })
	write := func(off int64) {
		t.Helper()
		if err := l.Mark("a", off, 4096); err != nil {
			t.Fatal(err)
		}
		l.Wrote("a", off, 4096)
		l.Done("a", off, 4096)
	}
	write(1 << 20)
	if err := l.Sweep(); err != nil {
		t.Fatal(err)
	}
	<-entered
	select {
	case <-l.FlushEnded():
		t.Fatal("FlushEnded signalled while the flush is under way")
	default:
	}
	// Idle at once (Idle is 0), but written after the flush began: only
	// the next Sweep flushes it.
	write(3 << 20)
	close(release)
	select {
	case <-l.FlushEnded():
	case <-time.After(20 * time.Second): // a hang guard, not a limit
		t.Fatal("FlushEnded not signalled after the flush ended")
	}
	if err := l.TakeEnded(); err != nil {
		t.Fatal(err)
	}
	if n := l.Marked(); n != 1 {
		t.Errorf("%d regions marked after TakeEnded on FlushEnded, want 1 (the one written during the flush)", n)
	}
	if under := l.FlushesUnderWay(); len(under) != 0 {
		t.Errorf("flushes under way after TakeEnded: %v, want none started", under)
	}
}
