package pair

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/subsystem"
)

// TestAnEndedFlushIsTakenWithoutWaitingForTheNextPass: the activity log's
// flush of a volume, started by a sweep, ends while the loop has nothing
// to do and its next periodic pass (save and sweep) is an hour away. The
// loop is woken by the flush's end and unmarks the region at once, as
// Clean did in the same call: left to the next pass (a second in a
// site), a crash meanwhile finds the region still marked and copies it
// again, after an initial copy every region of every volume.
func TestAnEndedFlushIsTakenWithoutWaitingForTheNextPass(t *testing.T) {
	defer func(d time.Duration) { actlog.Idle = d }(actlog.Idle)
	actlog.Idle = 0
	dir := t.TempDir()
	const size = 4 << 20
	ss, vols := subsystemAB(t, dir, size, nil)
	state := savePairs(t, dir, true, duplexAB(size)...)
	al, _ := activityLogAB(t, dir, size, ss)
	entered, release := make(chan struct{}, 16), make(chan struct{})
	al.SetFlush(func(string) error {
		entered <- struct{}{}
		<-release
		return nil
	}, func(string, [][2]int64, error) { t.Error("a flush failed") })
	mv := &freeLinkMover{linkMover: linkMover{subs: []*subsystem.Subsystem{ss}}, free: 1 << 50}
	mv.connected.Store(true)
	mg, err := Open(Options{Dir: state, Logger: slog.New(slog.DiscardHandler), ActivityLog: al}, mv, vols)
	if err != nil {
		t.Fatal(err)
	}
	mg.saveEvery = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() { defer wg.Done(); mg.Run(ctx) }()

	if err := al.Mark("a", 0, 4096); err != nil {
		t.Fatal(err)
	}
	al.Wrote("a", 0, 4096)
	al.Done("a", 0, 4096)
	// A pass of the loop's (with a change, or a second after the last
	// one) sweeps: a's flush starts, and does not end yet.
	if err := al.Sweep(); err != nil {
		t.Fatal(err)
	}
	<-entered
	if n := al.Marked(); n != 1 {
		t.Fatalf("%d regions marked while a's flush is under way, want 1", n)
	}
	close(release)
	// No wall-clock limit: the loop's next periodic pass is an hour away,
	// and this wait only keeps a loop that was not woken from hanging the
	// run.
	for deadline := time.Now().Add(20 * time.Second); al.Marked() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a's region still marked after its flush passed: the loop was not woken to take its result (%v under way)", al.FlushesUnderWay())
		}
	}
}
