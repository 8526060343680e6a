package e2e

import (
	"net"
	"sync"
	"testing"
	"time"
)

// freedAddrs binds the addresses of a hand-over whenever they are free, as
// any process on the machine that binds port 0 may be given a port a
// daemon's config took from port 0 once the daemon lets it go. Each bind
// is closed at once: what the test checks is that it was possible.
type freedAddrs struct {
	stopped chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	bound   map[string]bool
}

// watchFreedAddrs starts binding addrs whenever they are free, until the
// test ends or check is called with stop.
func watchFreedAddrs(t *testing.T, addrs ...string) *freedAddrs {
	t.Helper()
	f := &freedAddrs{stopped: make(chan struct{}), done: make(chan struct{}), bound: map[string]bool{}}
	go func() {
		defer close(f.done)
		for {
			for _, a := range addrs {
				if ln, err := net.Listen("tcp", a); err == nil {
					ln.Close()
					f.mu.Lock()
					f.bound[a] = true
					f.mu.Unlock()
				}
			}
			select {
			case <-f.stopped:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	t.Cleanup(f.stop)
	return f
}

func (f *freedAddrs) stop() {
	select {
	case <-f.stopped:
	default:
		close(f.stopped)
	}
	<-f.done
}

// check fails the test if an address was free at some moment so far: what
// hand-over let it go. With stop, the watch ends.
func (f *freedAddrs) check(t *testing.T, what string, stop bool) {
	t.Helper()
	if stop {
		f.stop()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for a := range f.bound {
		t.Fatalf("%s: %s was free for a moment, and another process bound it (the site serving next could not)", what, a)
	}
}
