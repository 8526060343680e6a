package timer

import (
	"sync"
	"testing"
)

func TestStrictlyIncreasingUnderConcurrency(t *testing.T) {
	tm := New()
	const workers, per = 8, 5000
	out := make([][]int64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				out[w] = append(out[w], tm.Now())
			}
		}()
	}
	wg.Wait()
	seen := make(map[int64]bool, workers*per)
	for w := range workers {
		for i, ts := range out[w] {
			if seen[ts] {
				t.Fatalf("timestamp %d handed out twice", ts)
			}
			seen[ts] = true
			if i > 0 && ts <= out[w][i-1] {
				t.Fatalf("worker %d: %d after %d", w, ts, out[w][i-1])
			}
		}
	}
}

func TestClockSteppingBack(t *testing.T) {
	clock := int64(1000)
	tm := NewWithClock(func() int64 { return clock })
	a := tm.Now()
	clock = 10 // the wall clock steps back
	b := tm.Now()
	if b <= a {
		t.Fatalf("got %d after %d, want later", b, a)
	}
	tm.AtLeast(5000)
	if c := tm.Now(); c <= 5000 {
		t.Fatalf("after AtLeast(5000) got %d", c)
	}
	tm.AtLeast(1) // never moves backwards
	if d := tm.Last(); d <= 5000 {
		t.Fatalf("AtLeast moved the timer back to %d", d)
	}
}
