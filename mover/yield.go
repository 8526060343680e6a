package mover

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The send path's CPU work (the record sets' checksums, encoding, and the
// vectored write whose copy into the socket, on loopback the receiver's TCP
// path too, the kernel does on the sender's CPU) costs the primary about as
// much per megabyte as serving the write itself. On a CPU the application
// keeps busy, it comes out of the application's time. In a burst (what
// waits to be sent is more than a steady rate leaves in a few intervals),
// while the sidefile still has room and what waits is young, none of it
// is urgent: the sidefile is there to absorb the burst. So then that work
// runs on an OS thread of its own at the lowest scheduling priority (nice
// 19): it takes what CPU the application leaves, all of it when the CPU is
// idle, little while the application wants the CPU. Smaller sends (a
// steady rate's: the lag) and those past either bound go from the
// session's own goroutine, at normal priority: the lag of a steady rate
// does not depend on a CPU to spare, nor on a secondary that keeps up.
//
// Only with Config.YieldBurstSends: a thread the kernel does not run holds
// the session, its heartbeats and its end with it
// (TestABurstIsSentWhenTheLowPriorityThreadIsNotRun).
//
// Only work that takes no lock the writers take runs there: a thread the
// kernel leaves waiting while it holds one would hold the writers too.
const (
	// yieldFill is the share of what a sidefile holds unpaced below
	// which sends yield: a burst the sidefile holds unpaced is sent after
	// it, and the sends are back at normal priority a little before the
	// writers would be paced.
	yieldFill = 0.9
	// yieldAge bounds how long a record set waits on yielding sends: a
	// CPU kept busy for longer than a burst gets its replication back
	// at normal priority rather than a lag that grows until pacing.
	yieldAge = time.Second
	// yieldFrom is the least a turn's record sets weigh for their sends
	// to yield: 4 MiB an interval is 200 MiB/s at the default 20 ms,
	// several times what 4 KiB writes reach at saturation on the bench's
	// machine (bench/RESULTS.md), a small share of a 1 MiB burst's rate.
	yieldFrom = 4 << 20
)

// extraP gives the process one P (runtime.GOMAXPROCS) more than it had,
// once, at the first yielding send: the yielder holds a P while it
// checksums, and with one P for the CPU it may use (a primary pinned to one
// core) the writers would wait on it whatever its thread's priority.
var extraP sync.Once

// yieldedHook, when set (tests only), runs on the yielder's thread before
// each of its functions: a thread the kernel does not schedule.
var yieldedHook atomic.Pointer[func()]

// yielder runs functions on a low-priority OS thread, one at a time.
type yielder struct {
	work chan func()
	done chan struct{}
}

// startYielder starts a yielder's thread, or returns nil where the thread's
// priority cannot be lowered.
func startYielder() *yielder {
	y := &yielder{work: make(chan func()), done: make(chan struct{})}
	ok := make(chan bool)
	go func() {
		// Never unlocked: the thread ends with the goroutine, rather than
		// going back to the runtime at the lowest priority.
		runtime.LockOSThread()
		if err := lowerPriority(); err != nil {
			ok <- false
			return
		}
		ok <- true
		for f := range y.work {
			if h := yieldedHook.Load(); h != nil {
				(*h)()
			}
			f()
			y.done <- struct{}{}
		}
	}()
	if !<-ok {
		return nil
	}
	return y
}

// do runs f on the yielder's thread and returns once it has run.
func (y *yielder) do(f func()) {
	y.work <- f
	<-y.done
}

// stop ends the thread.
func (y *yielder) stop() {
	if y != nil {
		close(y.work)
	}
}

// shouldYield says whether sets' sends may yield: they weigh yieldFrom or
// more, were read from the sidefiles within yieldAge, and every sidefile
// holds less than yieldFill of what it holds unpaced.
func (m *Mover) shouldYield(sets []*held, now time.Time) bool {
	if m.yield == nil {
		return false
	}
	var cost int64
	for _, h := range sets {
		if h.rs.ReadTime != 0 && now.Sub(time.Unix(0, h.rs.ReadTime)) > yieldAge {
			return false
		}
		cost += h.cost
	}
	if cost < yieldFrom {
		return false
	}
	for _, s := range m.subs {
		sf := s.ss.Sidefile()
		if float64(sf.Stats().Used) > yieldFill*float64(sf.Unpaced()) {
			return false
		}
	}
	return true
}

// run runs f, a part of a send that takes no lock, on the yielder's thread
// when this turn's sends yield, else here.
func (m *Mover) run(f func()) {
	if m.yielding && m.yield != nil {
		extraP.Do(func() { runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1) })
		m.yield.do(f)
		return
	}
	f()
}
