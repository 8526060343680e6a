package mover

import (
	"context"
	"syscall"
	"testing"
	"time"
)

func TestYielderRunsAtTheLowestPriority(t *testing.T) {
	y := startYielder()
	if y == nil {
		t.Skip("this system does not let a thread lower its priority")
	}
	defer y.stop()
	var prio, tid int
	var err error
	j := &job{encode: func(*frameBufs) error {
		tid = syscall.Gettid()
		prio, err = syscall.Getpriority(syscall.PRIO_PROCESS, tid)
		return nil
	}}
	if b, _, derr := y.do(context.Background(), j, time.Now().Add(time.Hour)); b == nil || derr != nil {
		t.Fatalf("the yielder did not encode: %v", derr)
	}
	if err != nil {
		t.Fatal(err)
	}
	// The raw system call answers 20 - nice.
	if prio != 1 {
		t.Errorf("the yielder's thread runs at nice %d, want 19", 20-prio)
	}
	if me := syscall.Gettid(); me == tid {
		t.Errorf("the yielder ran f on the caller's thread %d", me)
	}
	mine, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	if err == nil && mine == 1 {
		t.Error("the caller's thread was lowered too")
	}
}
