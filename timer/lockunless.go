package timer

import (
	"sync"
	"time"
)

// LockUnless takes mu, as long as it takes, unless giveUp, asked every
// 10 ms while mu is held by another, returns an error: LockUnless then
// returns that error with mu not taken. It serves those who would wait
// for a lock whose holder may itself wait for a stamp, and so for the
// write of the lease: once that write is known hung, the caller answers
// instead of waiting with it. The attempt goes on in the background
// after it is given up, and lets mu go at once if it gets it late.
func LockUnless(mu *sync.Mutex, giveUp func() error) error {
	if mu.TryLock() {
		return nil
	}
	var state sync.Mutex
	givenUp := false
	got := make(chan struct{})
	go func() {
		mu.Lock()
		state.Lock()
		defer state.Unlock()
		if givenUp {
			mu.Unlock()
			return
		}
		close(got)
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-got:
			return nil
		case <-tick.C:
		}
		if err := giveUp(); err != nil {
			state.Lock()
			defer state.Unlock()
			select {
			case <-got:
				return nil
			default:
			}
			givenUp = true
			return err
		}
	}
}
