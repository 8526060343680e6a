package timer

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLockUnlessTakesAFreeLock(t *testing.T) {
	var mu sync.Mutex
	if err := LockUnless(&mu, func() error { return errors.New("never asked") }); err != nil {
		t.Fatalf("a free lock: %v", err)
	}
	if mu.TryLock() {
		t.Fatal("LockUnless returned nil without the lock")
	}
}

func TestLockUnlessWaitsForAHolderThatLetsGo(t *testing.T) {
	var mu sync.Mutex
	mu.Lock()
	go func() { time.Sleep(50 * time.Millisecond); mu.Unlock() }()
	if err := LockUnless(&mu, func() error { return nil }); err != nil {
		t.Fatalf("a holder that lets go: %v", err)
	}
	if mu.TryLock() {
		t.Fatal("LockUnless returned nil without the lock")
	}
}

// An attempt given up must not keep the lock once its holder lets go:
// nobody would ever let it go again.
func TestLockUnlessGivenUpLetsALateLockGo(t *testing.T) {
	var mu sync.Mutex
	mu.Lock()
	hung := errors.New("hung")
	var asked atomic.Int32
	err := LockUnless(&mu, func() error {
		if asked.Add(1) >= 3 {
			return hung
		}
		return nil
	})
	if !errors.Is(err, hung) {
		t.Fatalf("given up: got %v, want %v", err, hung)
	}
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for !mu.TryLock() {
		if time.Now().After(deadline) {
			t.Fatal("the attempt given up kept the lock it got late")
		}
		time.Sleep(time.Millisecond)
	}
}

// Many callers at once, some giving up while others hold the lock and let
// it go: no two ever hold it together, a caller told it has the lock has
// it, and once every caller is done (the attempts given up included, which
// may get the lock late) it is free. A lock kept by an attempt given up
// would stop every later stamp and every drop for good.
func TestLockUnlessManyCallersGivingUpKeepTheLockExclusiveAndLeakNone(t *testing.T) {
	var mu sync.Mutex
	var holders, got, gaveUp atomic.Int32
	var wg sync.WaitGroup
	hung := errors.New("hung")
	for i := range 64 {
		wg.Go(func() {
			for j := range 50 {
				asked, start := 0, time.Now()
				err := LockUnless(&mu, func() error {
					asked++
					// Every caller gives up after a while: a lock
					// kept by an attempt given up fails the test
					// below rather than hangs it.
					if (i+j)%3 == 0 && asked >= 1+(i+j)%4 || time.Since(start) > time.Second {
						return hung
					}
					return nil
				})
				if err != nil {
					gaveUp.Add(1)
					continue
				}
				got.Add(1)
				if n := holders.Add(1); n != 1 {
					t.Errorf("%d holders of the lock at once", n)
				}
				time.Sleep(time.Duration((i*j)%3) * 100 * time.Microsecond)
				holders.Add(-1)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if gaveUp.Load() == 0 || got.Load() == 0 {
		t.Fatalf("%d taken, %d given up: want both", got.Load(), gaveUp.Load())
	}
	deadline := time.Now().Add(5 * time.Second)
	for !mu.TryLock() {
		if time.Now().After(deadline) {
			t.Fatalf("the lock is still held 5s after every caller was done (%d taken, %d given up)", got.Load(), gaveUp.Load())
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("%d taken, %d given up", got.Load(), gaveUp.Load())
}
