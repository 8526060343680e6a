//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package disk

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestLockFreeOnceClosedWhileDescriptorCopied: a lock is free for the next
// holder as soon as its Close returns, even while a copy of its descriptor
// lives on elsewhere. A child the process forks holds a copy of every
// descriptor from the fork to its exec, close-on-exec or not, and a flock
// belongs to the open file, not to one descriptor: closed only, the lock
// stayed until that copy went, and a primary started again in the process
// right after a stop was refused its own pair-state directory ("already
// locked by" its own pid) whenever another goroutine was starting a
// program. The copy here is a dup, which shares the open file as the
// child's does.
func TestLockFreeOnceClosedWhileDescriptorCopied(t *testing.T) {
	path := filepath.Join(t.TempDir(), "LOCK")
	l, err := lockFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := l.(interface{ Fd() uintptr })
	if !ok {
		t.Fatalf("the lock (%T) has no descriptor", l)
	}
	copied, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(copied)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := lockFile(path)
	if err != nil {
		t.Fatalf("taken again after Close, with a copy of the closed descriptor still open: %v", err)
	}
	again.Close()
}

// TestLockFreeOnceClosedWhileForking: as above with real forks: a lock
// closed and taken again at once, over and over, while other goroutines
// start programs, is never refused.
func TestLockFreeOnceClosedWhileForking(t *testing.T) {
	if _, err := os.Stat("/bin/true"); err != nil {
		t.Skip("no /bin/true to start")
	}
	path := filepath.Join(t.TempDir(), "LOCK")
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				exec.Command("/bin/true").Run()
			}
		})
	}
	defer wg.Wait()
	defer stop.Store(true)
	taken := 0
	for end := time.Now().Add(time.Second); time.Now().Before(end); taken++ {
		l, err := lockFile(path)
		if err != nil {
			t.Fatalf("taken again at once after %d closes, other goroutines starting programs: %v", taken, err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
