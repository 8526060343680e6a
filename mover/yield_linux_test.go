package mover

import (
	"context"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"duplex/recordset"
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

// TestAFrameTakenBackLeavesTheThreadsBuffersEmpty: a thread that had
// encoded a frame the session then took back (the thread not run before
// it could claim the send) encodes the next frame it is given from empty
// buffers: the data the first left out is not sent with the second.
func TestAFrameTakenBackLeavesTheThreadsBuffersEmpty(t *testing.T) {
	y := startYielder()
	if y == nil {
		t.Skip("this system does not let a thread lower its priority")
	}
	defer y.stop()
	if !y.boosts {
		t.Skip("the thread does not send here: no CAP_SYS_NICE")
	}
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func(p string) {
		if p == "send" {
			once.Do(func() {
				close(held)
				<-release
			})
		}
	}
	yieldedHook.Store(&hook)
	defer yieldedHook.Store(nil)
	data := []byte("left out")
	encode := func(b *frameBufs) error {
		b.frame = append(b.frame, 'f')
		b.ins = append(b.ins, recordset.Insert{At: len(b.frame), Data: data})
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-held
		cancel()
	}()
	if b, _, err := y.do(ctx, &job{encode: encode, send: true}, time.Now().Add(time.Hour)); b != nil || err == nil {
		t.Fatalf("a frame the session took back at its context's end: buffers %v, error %v", b != nil, err)
	}
	close(release)
	waitFor(t, "the thread to leave the frame taken back", y.free)
	b, _, err := y.do(context.Background(), &job{encode: encode}, time.Now().Add(time.Hour))
	if err != nil || b == nil {
		t.Fatalf("the next frame was not encoded by the thread: %v", err)
	}
	if got, want := string(b.frame), "f"; got != want {
		t.Errorf("frame %q, want %q", got, want)
	}
	if got, want := b.ins, []recordset.Insert{{At: 1, Data: data}}; !slices.EqualFunc(got, want, func(a, b recordset.Insert) bool {
		return a.At == b.At && string(a.Data) == string(b.Data)
	}) {
		t.Errorf("left out %v, want %v", got, want)
	}
}
