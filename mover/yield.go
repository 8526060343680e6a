package mover

import (
	"context"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"duplex/transport"
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
// The session never waits on that thread for longer than its frame's
// record sets may wait (yieldAge from their reading), nor past the end of
// its context. A frame is a job in two steps, each of which the thread
// claims before it begins it: its encoding (pure CPU, into the thread's
// own buffers) and its send. A job not claimed in time the session takes
// back and does itself; an encoding claimed but not finished the session
// does again in its own buffers, and leaves the thread's to it (the thread
// gets no new job until it has left the old one, and the updates' buffers
// are not handed back for reuse meanwhile). A send, once claimed, is the
// thread's alone (no two parties may write the connection): the session
// then raises the thread back to its own priority and waits for it, as it
// would wait for the send itself. Where the thread's priority cannot be
// raised again (no CAP_SYS_NICE), the thread only encodes and the session
// sends. The frames and their order on the link are the same whoever
// encodes or sends them.
//
// Only with Config.YieldBurstSends. What the session cannot bound is the
// process's: a thread woken for a frame, or preempted in the middle of
// its encoding, holds a P until the kernel runs it, and every
// stop-the-world (the garbage collector's) waits for it. The session
// raises a thread whose frame it takes back, so that wait ends within
// yieldAge and the kernel's scheduling at normal priority; on a machine
// that keeps its CPUs busy at normal priority, that is hundreds of
// milliseconds of pause for the whole process (bench/RESULTS.md). A thread
// that ran only system calls at the lowest priority (the sends, with its
// waits in poll(2)) and its Go code at normal priority would hold no P
// while it waits to be run.
//
// Only work that takes no lock the writers take runs there: a thread the
// kernel leaves waiting while it holds one would hold the writers too.
const (
	// yieldFill is the share of what a sidefile holds unpaced below
	// which sends yield: a burst the sidefile holds unpaced is sent after
	// it, and the sends are back at normal priority a little before the
	// writers would be paced.
	yieldFill = 0.9
	// yieldFrom is the least a turn's record sets weigh for their sends
	// to yield: 4 MiB an interval is 200 MiB/s at the default 20 ms,
	// several times what 4 KiB writes reach at saturation on the bench's
	// machine (bench/RESULTS.md), a small share of a 1 MiB burst's rate.
	yieldFrom = 4 << 20
)

// yieldAge bounds how long a record set waits on yielding sends, from its
// reading: a CPU kept busy for longer than a burst, or a thread the kernel
// does not run at all, gets its replication back at normal priority rather
// than a lag that grows until pacing. It is longer than a burst of the
// bench's (256 MiB in well under a second): a bound of a few intervals
// would take every burst's sends back while the application still keeps
// the CPU, which is when they are meant to wait. A variable for tests.
var yieldAge = time.Second

// yieldedHook, when set (tests only), runs on the yielder's thread at the
// named points of a job: "take" before it claims the encoding, "encode"
// once it has, "send" before it claims the send, "sending" once it has: a
// thread the kernel does not schedule there.
var yieldedHook atomic.Pointer[func(point string)]

func hookAt(point string) {
	if h := yieldedHook.Load(); h != nil {
		(*h)(point)
	}
}

// The steps of a job.
const (
	jobOffered  int32 = iota // waiting for the thread
	jobEncoding              // the thread encodes it
	jobEncoded               // encoded in the thread's buffers; the session sends it
	jobSending               // the thread sends it: it alone may write the connection
	jobDone                  // sent, or failed (err)
	jobTaken                 // the session does it: the thread leaves it
)

// job is one frame for the yielder's thread.
type job struct {
	state  atomic.Int32
	left   atomic.Bool // the thread touches neither the job nor its buffers any more
	encode func(*frameBufs) error
	conn   transport.Conn
	send   bool // the thread sends the frame too
	n      int  // the frame's length on the link, once jobDone
	err    error
}

// yielder runs jobs on a low-priority OS thread, one at a time.
type yielder struct {
	work chan *job
	wake chan struct{} // the thread left a job
	tid  int
	// boosts says the thread's priority can be raised back to normal:
	// only then does it send, as a send it has begun must be waited for.
	boosts  bool
	boosted atomic.Bool
	bufs    frameBufs // the thread's, while it holds a job
	held    *job      // the session's: the last job given, until left
}

// yieldStats count the frames the yielders' threads encoded (and sent, if
// they send), and the frames the sessions took back from them (tests).
var yieldStats struct{ yielded, taken atomic.Uint64 }

// startYielder starts a yielder's thread, or returns nil where the thread's
// priority cannot be lowered.
func startYielder() *yielder {
	y := &yielder{work: make(chan *job, 1), wake: make(chan struct{}, 1)}
	ok := make(chan bool)
	go func() {
		// Never unlocked: the thread ends with the goroutine, rather than
		// going back to the runtime at the lowest priority.
		runtime.LockOSThread()
		if err := lowerPriority(); err != nil {
			ok <- false
			return
		}
		y.tid = threadID()
		y.boosts = setPriority(y.tid, 0) == nil && lowerPriority() == nil
		ok <- true
		for j := range y.work {
			hookAt("take")
			if y.boosted.Swap(false) {
				lowerPriority()
			}
			y.run(j)
			j.left.Store(true)
			select {
			case y.wake <- struct{}{}:
			default:
			}
		}
	}()
	if !<-ok {
		return nil
	}
	return y
}

// run does j's steps that the session has not taken back.
func (y *yielder) run(j *job) {
	if !j.state.CompareAndSwap(jobOffered, jobEncoding) {
		return
	}
	hookAt("encode")
	if err := y.bufs.encode(j.encode); err != nil {
		j.err = err
		j.state.CompareAndSwap(jobEncoding, jobDone)
		return
	}
	if !j.send {
		j.state.CompareAndSwap(jobEncoding, jobEncoded)
		return
	}
	hookAt("send")
	if !j.state.CompareAndSwap(jobEncoding, jobSending) {
		y.bufs.reset() // not kept referring to the updates' data
		return
	}
	hookAt("sending")
	j.n, j.err = sendFrame(j.conn, &y.bufs)
	j.state.Store(jobDone)
	yieldStats.yielded.Add(1)
}

// free says whether the thread holds no job: only then may it be given
// one, and the updates' buffers be handed back for reuse.
func (y *yielder) free() bool {
	if y.held != nil && y.held.left.Load() {
		y.held = nil
	}
	return y.held == nil
}

// do gives j to the thread and waits for it until deadline or the end of
// ctx. It returns the buffers the frame is in and its length on the link
// if the thread sent it, the buffers only if the thread encoded it and the
// session is to send it, or nil where the session does the job itself.
func (y *yielder) do(ctx context.Context, j *job, deadline time.Time) (*frameBufs, int, error) {
	y.held = j
	y.work <- j
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		switch j.state.Load() {
		case jobEncoded:
			yieldStats.yielded.Add(1)
			return &y.bufs, 0, nil
		case jobDone:
			if j.err != nil {
				return nil, 0, j.err
			}
			return &y.bufs, j.n, nil
		}
		select {
		case <-y.wake:
			continue
		case <-t.C:
		case <-ctx.Done():
		}
		// A thread woken for a job holds a P until it is run, and every
		// stop-the-world of the process waits for it to be run: it is
		// raised to normal priority whatever its step, so that it leaves
		// the job, or finishes it, soon.
		y.boost()
		if j.state.CompareAndSwap(jobOffered, jobTaken) || j.state.CompareAndSwap(jobEncoding, jobTaken) ||
			j.state.CompareAndSwap(jobEncoded, jobTaken) {
			yieldStats.taken.Add(1)
			return nil, 0, ctx.Err()
		}
		if j.state.Load() == jobSending {
			// Only the thread may go on writing the connection: at the
			// session's own priority from here.
			if ctx.Err() != nil {
				return nil, 0, ctx.Err()
			}
			t.Reset(time.Hour)
		}
	}
}

// boost raises the thread to normal priority until its next job.
func (y *yielder) boost() {
	if y.boosts && !y.boosted.Load() && setPriority(y.tid, 0) == nil {
		y.boosted.Store(true)
	}
}

// stop ends the thread once it has left its job.
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

// emit encodes a frame with encode and sends it: on the yielder's thread
// when this turn's sends yield and the frame may (yieldable: encode takes
// nothing the session changes meanwhile), else here. oldest is the
// earliest reading time of its record sets. It returns the buffers the
// frame was encoded in and its length on the link.
func (m *Mover) emit(ctx context.Context, conn transport.Conn, encode func(*frameBufs) error, yieldable bool, oldest int64) (*frameBufs, int, error) {
	if y := m.yield; yieldable && m.yielding && y.free() {
		if !m.extraP {
			extraP.add()
			m.extraP = true
		}
		m.yieldedAt = time.Now()
		deadline := m.yieldedAt.Add(yieldAge)
		if oldest != 0 {
			deadline = time.Unix(0, oldest).Add(yieldAge)
		}
		j := &job{encode: encode, conn: conn, send: y.boosts}
		b, n, err := y.do(ctx, j, deadline)
		switch {
		case err != nil:
			return nil, 0, err
		case b != nil && j.send:
			return b, n, nil
		case b != nil:
			n, err := sendFrame(conn, b)
			return b, n, err
		}
		// Taken back: the rest of the turn goes from here.
		m.yielding = false
	}
	if err := m.own.encode(encode); err != nil {
		return nil, 0, err
	}
	n, err := sendFrame(conn, &m.own)
	return &m.own, n, err
}

// endYield gives the extra P back once sends have not yielded for
// yieldAge, or at the end of the session (now zero). Setting GOMAXPROCS
// stops the world, which waits for a thread still at a frame taken back
// from it to be run: the session does not wait for that, nor does its end.
func (m *Mover) endYield(now time.Time) {
	if !m.extraP || !now.IsZero() && now.Sub(m.yieldedAt) <= yieldAge {
		return
	}
	m.extraP = false
	if j := m.yield.held; j != nil && !j.left.Load() {
		go func() {
			for !j.left.Load() {
				time.Sleep(10 * time.Millisecond)
			}
			extraP.drop()
		}()
		return
	}
	extraP.drop()
}

// extraP gives the process one P (runtime.GOMAXPROCS) more than the
// runtime's own figure while some session's sends yield: the yielder holds
// a P while it checksums, and with one P for the CPU it may use (a primary
// pinned to one core) the writers would wait on it whatever its thread's
// priority. Setting GOMAXPROCS ends the runtime's own updates of it (to a
// container's CPU limit, say): once no session yields, it goes back to the
// runtime's default, which resumes them, or to the figure of the
// GOMAXPROCS environment variable.
var extraP procs

type procs struct {
	mu    sync.Mutex
	users int
	was   int
}

func (p *procs) add() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.users == 0 {
		p.was = runtime.GOMAXPROCS(0)
		runtime.GOMAXPROCS(p.was + 1)
	}
	p.users++
}

func (p *procs) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.users--; p.users > 0 {
		return
	}
	if os.Getenv("GOMAXPROCS") != "" {
		runtime.GOMAXPROCS(p.was)
	} else {
		runtime.SetDefaultGOMAXPROCS()
	}
}

// encode encodes a frame in b with encode, from empty buffers: a frame
// whose encoding failed, or was taken back from the thread once encoded,
// leaves its data in them.
func (b *frameBufs) encode(encode func(*frameBufs) error) error {
	b.reset()
	return encode(b)
}

// reset empties b, keeping its arrays.
func (b *frameBufs) reset() {
	clear(b.ins)
	clear(b.vec)
	b.ins, b.vec, b.frame = b.ins[:0], b.vec[:0], b.frame[:0]
}
