package secondary

import (
	"sync"
	"testing"
	"time"

	"duplex/apply"
)

// TestFenceAndStatusAnswerWithABacklogOnSlowVolumes: recover fences a
// running secondary whose volumes are slow, and shows how far applying has
// got while it waits (status). With two groups journaled behind the one
// being applied, the receiver waits for room in the apply queue holding the
// secondary's lock, so neither status nor the fence (which must first cut
// the primary off under that lock) answers until the volumes take a group:
// recover shows nothing and the primary stays linked for as long as a
// group's writes take.
func TestFenceAndStatusAnswerWithABacklogOnSlowVolumes(t *testing.T) {
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	defer open()
	r := newLagRig(t, Config{}, func(tg apply.Target) apply.Target { return gatedTarget{Target: tg, gate: gate} })
	for seq := uint64(1); seq <= 4; seq++ {
		r.send(t, seq, false)
	}
	time.Sleep(500 * time.Millisecond) // the receiver has formed and journaled what it can by now
	if _, ok := statusWithin(r.sec, 10*time.Second); !ok {
		t.Error("status did not answer within 10s while the volumes were slow (the receiver holds the lock, waiting on the apply queue)")
	}
	fenced := make(chan struct{})
	go func() {
		defer close(fenced)
		r.sec.Fence()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := make(chan bool, 1)
		go func() { got <- r.sec.Stats().Connected }()
		select {
		case c := <-got:
			if !c {
				open()
				<-fenced
				return
			}
		case <-time.After(time.Until(deadline)):
		}
		if time.Now().After(deadline) {
			open()
			<-fenced
			t.Fatal("a fence begun while the volumes were slow had not cut the primary off within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
