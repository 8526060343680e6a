package timer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"duplex/disk"
)

// A primary that restarts must stamp above everything it stamped before,
// even if its clock now reads earlier: the secondary has formed groups
// through those stamps, and an update stamped before them would sort into
// history. Persisting every stamp would cost an fsync per write, so the timer
// persists a mark ahead of use instead, like a lease: every stamp handed out
// is below the mark on disk, and the mark is pushed forward, in the
// background, when stamps reach the last half of the lease. A restart starts
// above the mark; a clean stop records the last stamp itself, so the next run
// does not start a lease ahead of the clock.
//
// After a crash the stamps start at the mark, up to a lease ahead of the
// clock, and stay there (each one the last plus a nanosecond) until the clock
// catches up. The mark is therefore never written past a lease ahead of the
// clock: were it written a margin past the stamps instead, every restart
// quicker than that margin would add to the lead, and the secondary's
// consistency time, one of these stamps, would run ahead of the clock without
// bound, claiming writes it does not hold. A mark a lease ahead of the clock
// is always above the stamps while they lead it by less than a lease, and a
// restart starts them at most a lease ahead (the clock has not gone back past
// the reading the mark was written at). Only when they lead by the whole
// lease does a stamp wait, for the clock to tick. A clock that stepped back
// is the one exception: the stamps lead it by the step, which no mark can
// undo, and the mark is then written a small slack past the stamps.

type lease struct {
	fsys  disk.FS
	path  string
	ahead int64
	slack int64 // how far the mark runs ahead of stamps when the clock went back
	log   *slog.Logger

	mark     atomic.Int64 // every stamp handed out is below it, on disk
	renewing atomic.Bool
	mu       sync.Mutex     // serialises writes of the file
	wg       sync.WaitGroup // renewals in flight, for tests
	writes   atomic.Uint64
	closed   bool
	// gone ends when the stop gives the lease up (Abandon): a write
	// under way renames nothing from then on, and none is begun.
	gone    context.Context
	abandon context.CancelFunc
	// writing is when the write of the mark under way began (unix ns), 0
	// while none is, and waiting how many stamps wait for it: a disk that
	// stops answering holds the renewal, and once the stamps reach the
	// mark on disk, every stamp (every client write) waits with it.
	writing atomic.Int64
	waiting atomic.Int64
}

type markFile struct {
	// StampsBelow: every stamp this primary handed out is below it.
	StampsBelow int64 `json:"stamps_below_ns"`
}

// OpenPersistent returns a Timer whose stamps are above every stamp handed out
// by an earlier Timer on the same file, however its clock moved in between.
// now nil means the wall clock; ahead is the lease (how far ahead of the
// stamps the mark is written), default 2s; log reports a failed renewal;
// fsys holds path (nil: disk.OS).
func OpenPersistent(fsys disk.FS, path string, now func() int64, ahead time.Duration, log *slog.Logger) (*Timer, error) {
	if ahead <= 0 {
		ahead = 2 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	var mf markFile
	fsys = disk.Or(fsys)
	b, err := disk.ReadFile(fsys, path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("timer %s: %w", path, err)
	default:
		// A mark read as none would let the stamps go back behind those
		// handed out before, on a clock that went back.
		if err := disk.DecodeRecord(b, &mf, "stamps_below_ns"); err != nil {
			return nil, fmt.Errorf("timer: %w: it holds a mark above every stamp this primary handed out, so that a clock that went back "+
				"never stamps a write behind one the secondary holds: put back a copy of it; or remove it once this host's clock is past "+
				"the consistency time the secondary reports (duplex status), and it is written anew", disk.Damaged("lease", path, err))
		}
	}
	t := NewWithClock(now)
	t.AtLeast(mf.StampsBelow)
	l := &lease{fsys: fsys, path: path, ahead: int64(ahead), slack: max(int64(ahead)/64, 1), log: log}
	l.gone, l.abandon = context.WithCancel(context.Background())
	// At most the mark of the run before when the clock has not moved since
	// it was written: the first stamp then waits for the clock in cover.
	if err := l.write(max(l.next(t.Last(), t.wall()), mf.StampsBelow)); err != nil {
		return nil, err
	}
	t.lease = l
	return t, nil
}

// next is the mark to write for stamp ts at clock reading wall: a lease
// ahead of the clock, which is above ts unless ts leads the clock by the
// whole lease; or, when the clock went back behind the stamps by more than a
// lease, a slack past ts.
func (l *lease) next(ts, wall int64) int64 {
	if ts-wall > l.ahead {
		return ts + l.slack
	}
	return wall + l.ahead
}

// fresh says mark m needs no renewal yet for stamp ts below it at clock
// reading wall: the clock is in the first half of the lease, and the stamp
// short of the last half of the slack below the mark or, if it is not, a
// renewal now would not move the mark by half a slack (the stamps lead the
// clock by nearly the lease, and renewing on every stamp would write the
// mark on every stamp).
func (l *lease) fresh(m, ts, wall int64) bool {
	if wall >= m-l.ahead/2 {
		return false
	}
	return ts < m-l.slack/2 || l.next(ts, wall) < m+l.slack/2
}

// cover makes sure ts, taken at clock reading wall, lies below the mark on
// disk before it is handed out, and starts a renewal once the clock reaches
// the last half of the lease (or the stamps the last half of the slack).
func (l *lease) cover(t *Timer, ts, wall int64) {
	m := l.mark.Load()
	if ts < m {
		if l.fresh(m, ts, wall) {
			return
		}
		if l.renewing.CompareAndSwap(false, true) {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				defer l.renewing.Store(false)
				l.extend(t, ts)
			}()
		}
		return
	}
	// The renewal fell behind (or the clock jumped): this write waits for it.
	l.waiting.Add(1)
	defer l.waiting.Add(-1)
	l.extend(t, ts)
}

func (l *lease) extend(t *Timer, ts int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	wall := t.wall()
	m := l.mark.Load()
	if l.closed || l.gone.Err() != nil || (ts < m && l.fresh(m, ts, wall)) {
		return
	}
	n := l.next(ts, wall)
	if n <= ts {
		n = l.awaitTick(t, ts)
	}
	if err := l.write(max(n, m)); err != nil {
		// Stamps stay correct in this process; only a restart on a clock
		// behind could go wrong, and the secondary refuses what that stamps.
		l.log.Error("cannot persist the timer's mark", "err", err)
	}
}

// awaitTick waits for the clock to move past the reading at which ts leads
// it by exactly the lease, so that the mark can stay a lease ahead of the
// clock, and returns that mark. A clock that does not move within the slack
// (in real time) is taken for one that went back: the mark is then a slack
// past ts.
func (l *lease) awaitTick(t *Timer, ts int64) int64 {
	deadline := time.Now().Add(time.Duration(l.slack))
	for time.Now().Before(deadline) {
		time.Sleep(time.Microsecond)
		if n := l.next(ts, t.wall()); n > ts {
			return n
		}
	}
	l.log.Warn("the clock does not move: the timer's mark runs a slack past the stamps", "stamp", ts)
	return ts + l.slack
}

func (l *lease) write(mark int64) error {
	b, _ := json.Marshal(markFile{StampsBelow: mark})
	l.writing.Store(time.Now().UnixNano())
	defer l.writing.Store(0)
	if err := disk.WriteFileAtomicUnless(l.gone, l.fsys, l.path, append(b, '\n')); err != nil {
		return fmt.Errorf("timer: %w", err)
	}
	l.writes.Add(1)
	l.mark.Store(mark)
	return nil
}

// LeaseWait returns how long the write of the lease's mark under way has
// taken, 0 if none is, and how many stamps wait for it: each is a write
// held, not acknowledged, until the mark is on disk.
func (t *Timer) LeaseWait() (time.Duration, int) {
	l := t.lease
	if l == nil {
		return 0, 0
	}
	var d time.Duration
	if at := l.writing.Load(); at != 0 {
		d = time.Since(time.Unix(0, at))
	}
	return d, int(l.waiting.Load())
}

// Close records the last stamp handed out as the mark, so that the next run
// continues right after it. Stamps handed out after Close are not covered.
func (t *Timer) Close() error {
	l := t.lease
	if l == nil {
		return nil
	}
	// A renewal in flight finishes under l.mu first, or finds closed set.
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.gone.Err() != nil {
		return fmt.Errorf("timer %s: given up (its disk stopped answering): the last stamp is not recorded; the mark on disk, above every stamp, stays", l.path)
	}
	return l.write(t.Last() + 1)
}

// Abandon gives the lease's writes up, at a stop that goes on without a
// write hung on its disk: the one under way, and any later one (Close's
// among them), replace the file no more, even once the disk answers (see
// disk.WriteFileAtomicUnless). The mark on disk stays the last one
// written, above every stamp handed out; a late write could otherwise
// replace a mark the next run wrote with a lower one. Only a rename the
// disk already holds can still land: a process does not exit before it
// has, and lets its lock on the state directory go only after it (see
// AwaitWrites).
func (t *Timer) Abandon() {
	if t.lease != nil {
		t.lease.abandon()
	}
}

// GivenUp says whether the stop gave the lease's writes up (Abandon):
// a stamp waiting for the write under way was then handed out with no
// mark written above it.
func (t *Timer) GivenUp() bool {
	return t.lease != nil && t.lease.gone.Err() != nil
}

// AwaitWrites waits for the write of the lease under way, if any, to end:
// given up (Abandon), its rename may still land, once the disk answers,
// if it had begun, and the lock that keeps a next run off the file is
// let go only after it.
func (t *Timer) AwaitWrites() {
	if t.lease != nil {
		// Every write is made under mu: taking it waits for the one under way.
		t.lease.mu.Lock()
		t.lease.mu.Unlock()
	}
}

// wait waits for a renewal in flight; tests call it once no stamp is taken.
func (t *Timer) wait() {
	if t.lease != nil {
		t.lease.wg.Wait()
	}
}

// LeaseHungError says that the write of the lease's mark has not ended
// for D, Waiting stamps waiting for it: its disk stopped answering, and
// every stamp past the mark on disk (every write) waits with it.
type LeaseHungError struct {
	D       time.Duration
	Waiting int
}

func (e *LeaseHungError) Error() string {
	return fmt.Sprintf("the write of the timer's lease has not ended after %s (its disk stopped answering), %d updates waiting for their timestamps",
		e.D.Round(time.Millisecond), e.Waiting)
}

// Hung returns a LeaseHungError if the write of the lease's mark under
// way has taken wait or more and stamps wait for it, nil otherwise.
func (t *Timer) Hung(wait time.Duration) error {
	if d, waiting := t.LeaseWait(); d > 0 && d >= wait && waiting > 0 {
		return &LeaseHungError{D: d, Waiting: waiting}
	}
	return nil
}

// StampWaits says whether a stamp taken now would wait for a write of the
// lease's mark: it would reach the mark on disk. With no stamp waiting,
// Hung says nothing of a write of the lease that hangs, while every
// stamp taken would wait for it.
func (t *Timer) StampWaits() bool {
	l := t.lease
	if l == nil {
		return false
	}
	return max(t.wall(), t.last.Load()+1) >= l.mark.Load()
}

// NowWithin is Now for a stamp that may be given up: one that waits for
// the write of the lease's mark waits only until that write, and the
// stamp, have taken wait (a write the disk has just let go ends first),
// and is then not handed out, the error a LeaseHungError. An
// operator's command stamps its marker so: it is refused, rather than
// wait with the disk without bound. The stamp given up leaves a gap,
// which the order of the stamps handed out does not mind.
func (t *Timer) NowWithin(wait time.Duration) (int64, error) {
	l := t.lease
	if l == nil {
		return t.Now(), nil
	}
	for {
		last := t.last.Load()
		wall := t.wall()
		ts := max(wall, last+1)
		if !t.last.CompareAndSwap(last, ts) {
			continue
		}
		if ts < l.mark.Load() {
			l.cover(t, ts, wall) // the mark only rises: it does not wait
			return ts, nil
		}
		l.waiting.Add(1)
		defer l.waiting.Add(-1)
		done := make(chan struct{})
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer close(done)
			l.extend(t, ts)
		}()
		start := time.Now()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return ts, nil
			case <-tick.C:
			}
			if err := t.Hung(wait); err != nil && time.Since(start) >= wait {
				return 0, err
			}
		}
	}
}
