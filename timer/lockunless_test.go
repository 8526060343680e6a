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
