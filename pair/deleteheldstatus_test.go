package pair

import (
	"sync/atomic"
	"testing"
	"time"

	"duplex/internal/testhold"
	"duplex/timer"
)

// secondReading holds the second reading of the clock after arm: the
// deletion's marker, its suspension's taken already.
type secondReading struct {
	testhold.Once
	skip atomic.Int32
}

func (c *secondReading) arm() { c.skip.Store(1); c.Arm() }

func (c *secondReading) Now() int64 {
	if c.skip.Add(-1) < 0 {
		c.Pass()
	}
	return time.Now().UnixNano()
}

// A deletion suspends its pair, then captures its marker: while that
// marker waits for its stamp, under the manager's lock, the pair's writes
// already go to its bitmap, never to ship, and status must not say it is
// duplex (a duplex pair is claimed consistent as of every acknowledgement).
func TestPairsDoNotSayDuplexWhileADeletionsMarkerWaits(t *testing.T) {
	dir := t.TempDir()
	const size = 4 << 20
	state := savePairs(t, dir, true,
		&Pair{Volume: "a", Subsystem: "s1", State: Duplex, Size: size, Consistent: 1},
		&Pair{Volume: "b", Subsystem: "s1", State: Duplex, Size: size})
	c := &secondReading{}
	mg, ss := restartable(t, dir, state, size, timer.NewWithClock(c.Now))()
	c.arm()
	deleted := make(chan error, 1)
	go func() { _, err := mg.Delete("a"); deleted <- err }()
	<-c.Entered()
	if ss.Tracking("a") == nil {
		t.Fatal("pair a's writes are not tracked while its deletion's marker waits")
	}
	if a := mg.Pairs()[0]; a.State == Duplex {
		t.Errorf("while its deletion's marker waited, its writes tracked in its bitmap, pair a read %s", a.State)
	}
	c.Release()
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if a := mg.Pairs()[0]; !a.Deleted {
		t.Errorf("after its deletion returned, pair a read %+v, want deleted", a)
	}
}
