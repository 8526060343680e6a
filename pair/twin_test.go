package pair

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/bitmap"
	"duplex/disk"
	"duplex/mover"
	"duplex/recordset"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/transport"
)

// memSubsystem is an in-memory twin of subsystem.Subsystem. It keeps the
// contract the manager relies on: a write to a suspended volume only marks its
// tracking bitmap (and sticks in the activity log); any other write or copy
// reserves sidefile space (waiting while the sidefile is full), is marked in
// the activity log and captured with a fresh stamp; a copy of a suspended
// volume is refused. Captured updates carry no data; their cost is that of
// their length.
type memSubsystem struct {
	id   string
	side *sidefile.Sidefile

	mu       sync.Mutex
	al       *actlog.Log
	clock    int64
	tracking map[string]*bitmap.Bitmap
	// holes makes CopyHole report every range as a hole.
	holes bool
	// captured is called after a copy update is captured, before Copy or
	// CopyHole returns: a test interleaves writes and operations there.
	captured func(vol string, off, length int64)
	copies   []recordset.Update
	// hangs says which copies' reads of the volume hang until the mover
	// gives them up: each is captured, then given up as the mover does
	// (subsystem.DrainWithin), and its Copy fails; abandoned holds them
	// until the mover's Abandoned takes them.
	hangs     func(vol string, off int64) bool
	abandoned []recordset.Update
	// hung, if set, holds the copies given up until it is closed: their
	// reads hang on.
	hung chan struct{}
	// untilDrop has the hung copies wait for a Drop to give them up
	// instead (no cut's wait has run out yet): reading holds them until
	// then.
	untilDrop bool
	reading   []recordset.Update
	// fails says which copies' reads of the volume fail (a failing disk):
	// as subsystem.Copy does, the copy is captured all the same (its data
	// zeroes) and its Copy returns the read's error.
	fails func(vol string, off int64) bool
	// capturing, if set, runs before a copy is captured (before its
	// sidefile room and its activity-log mark, which a slow disk delays),
	// read after, as the copy reads the volume (a slow disk).
	capturing, read func(vol string, off int64)
	// refuses, if set, returns the error a copy fails with before anything
	// is captured (nil: none), and tries counts the copies tried, per
	// volume.
	refuses func(vol string, off int64) error
	tries   map[string]int
	// failed are the writes whose volume failed them, for FailedWrites.
	failed []subsystem.FailedWrite
}

func (s *memSubsystem) FailedWrites() []subsystem.FailedWrite {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.failed
	s.failed = nil
	return f
}

func newMemSubsystem(id string, sidefileLimit int64) *memSubsystem {
	return &memSubsystem{id: id, side: sidefile.New(sidefileLimit), tracking: map[string]*bitmap.Bitmap{}}
}

func (s *memSubsystem) ID() string                   { return s.id }
func (s *memSubsystem) Sidefile() *sidefile.Sidefile { return s.side }

func (s *memSubsystem) Stamp() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock++
	return s.clock
}

func (s *memSubsystem) Suspend(vol string, bm *bitmap.Bitmap) {
	s.mu.Lock()
	s.tracking[vol] = bm
	s.mu.Unlock()
}

func (s *memSubsystem) Resume(vol string) *bitmap.Bitmap {
	s.mu.Lock()
	defer s.mu.Unlock()
	bm := s.tracking[vol]
	delete(s.tracking, vol)
	return bm
}

func (s *memSubsystem) Tracking(vol string) *bitmap.Bitmap {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tracking[vol]
}

func (s *memSubsystem) actlog() *actlog.Log {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.al
}

// admit takes sidefile space for an update of [off, off+length) of vol
// and marks it in the activity log by mark, then runs add under s.mu; if
// vol was suspended meanwhile, it gives both back instead and says so.
func (s *memSubsystem) admit(ctx context.Context, vol string, off, length int64, mark func(*actlog.Log) error, add func()) (bool, error) {
	cost := sidefile.Cost(int(length))
	if _, err := s.side.Reserve(ctx, cost); err != nil {
		return false, err
	}
	if al := s.actlog(); al != nil {
		if err := mark(al); err != nil {
			s.side.Release(cost)
			return false, err
		}
	}
	s.mu.Lock()
	if s.tracking[vol] != nil {
		s.mu.Unlock()
		s.side.Release(cost)
		if al := s.actlog(); al != nil {
			al.Done(vol, off, length)
		}
		return false, nil
	}
	add()
	s.mu.Unlock()
	return true, nil
}

// write is a write of [off, off+length) to vol, as subsystem.Write does it.
func (s *memSubsystem) write(ctx context.Context, vol string, off, length int64) error {
	if bm := s.Tracking(vol); bm != nil {
		if al := s.actlog(); al != nil {
			if err := al.Stick(vol, off, length); err != nil {
				return err
			}
		}
		bm.Set(off, length)
		return nil
	}
	ok, err := s.admit(ctx, vol, off, length, func(al *actlog.Log) error { return al.Mark(vol, off, length) }, func() {
		s.clock++
		s.side.Append(recordset.Update{Volume: vol, Kind: recordset.KindWrite, Offset: uint64(off), Length: uint64(length), Timestamp: s.clock})
	})
	if err != nil {
		return err
	}
	if al := s.actlog(); al != nil {
		al.Wrote(vol, off, length) // a memory volume's write is done at once
	}
	if !ok {
		// Suspended while this write waited for space: track it instead.
		return s.write(ctx, vol, off, length)
	}
	return nil
}

func (s *memSubsystem) Copy(ctx context.Context, vol string, off, length int64) error {
	return s.copy(ctx, vol, off, length, recordset.KindCopy, nil)
}

func (s *memSubsystem) CopyReporting(ctx context.Context, vol string, off, length int64, captured func()) error {
	return s.copy(ctx, vol, off, length, recordset.KindCopy, captured)
}

func (s *memSubsystem) CopyHole(ctx context.Context, vol string, off, length int64) (bool, error) {
	s.mu.Lock()
	holes := s.holes
	s.mu.Unlock()
	if !holes {
		return false, nil
	}
	return true, s.copy(ctx, vol, off, length, recordset.KindZeroes, nil)
}

// errSuspended is the twin's refusal of a copy of a suspended volume.
var errSuspended = fmt.Errorf("volume is suspended")

func (s *memSubsystem) copy(ctx context.Context, vol string, off, length int64, kind recordset.Kind, captured func()) error {
	s.mu.Lock()
	if s.tries == nil {
		s.tries = map[string]int{}
	}
	s.tries[vol]++
	capturing, read, refuses := s.capturing, s.read, s.refuses
	s.mu.Unlock()
	if refuses != nil {
		if err := refuses(vol, off); err != nil {
			return err
		}
	}
	if capturing != nil {
		capturing(vol, off)
	}
	var u recordset.Update
	var hook func(vol string, off, length int64)
	ok, err := s.admit(ctx, vol, off, length, func(al *actlog.Log) error { return al.MarkCopy(vol, off, length) }, func() {
		s.clock++
		u = recordset.Update{Volume: vol, Kind: kind, Offset: uint64(off), Length: uint64(length), Timestamp: s.clock}
		s.copies = append(s.copies, u)
		hook = s.captured
	})
	if err != nil {
		return err
	}
	if !ok {
		return errSuspended
	}
	if captured != nil {
		captured()
	}
	s.mu.Lock()
	hangs := s.hangs != nil && kind == recordset.KindCopy && s.hangs(vol, off)
	if hangs && s.untilDrop {
		s.reading = append(s.reading, u)
	} else if hangs {
		s.abandoned = append(s.abandoned, u)
	}
	hung := s.hung
	s.mu.Unlock()
	if hangs {
		s.side.Release(sidefile.Cost(int(length)))
		if hung != nil {
			<-hung
		}
		return errAbandoned
	}
	if read != nil && kind == recordset.KindCopy {
		read(vol, off)
	}
	fails := s.fails != nil && kind == recordset.KindCopy && s.fails(vol, off)
	s.side.Append(u)
	if fails {
		return fmt.Errorf("subsystem %s: copy %s [%d, +%d): %w: %w", s.id, vol, off, length, subsystem.ErrCopyRead, syscall.EIO)
	}
	if hook != nil {
		hook(vol, off, length)
	}
	return nil
}

// errAbandoned is the twin's subsystem.ErrCopyAbandoned.
var errAbandoned = fmt.Errorf("copy given up")

// noneAbandoned is the Abandoned of a mover that never gives a copy up.
type noneAbandoned struct{}

func (noneAbandoned) Abandoned() []recordset.Update { return nil }

// memMover is an in-memory twin of mover.Mover: it ships (and acknowledges)
// what the subsystems captured when told to, and Drop discards it.
type memMover struct {
	subs []*memSubsystem

	mu        sync.Mutex
	al        *actlog.Log
	connected bool
	acked     int64
	// progress is when the link last acknowledged something new: a link
	// that comes back acknowledges at once.
	progress time.Time
	// refusals and lastRefusal are what the mover's Stats say of the
	// sessions the secondary refused.
	refusals    uint64
	lastRefusal transport.Refusal
	// stale counts, of the refusals, those of a stale record set.
	stale     uint64
	lastStale string // the last stale refusal's reason
	// base is what the secondary had acknowledged when the manager last
	// opened: the position the restarted mover's first Welcome brings.
	base int64
	// inconsistent is what the secondary's acknowledgements name as
	// consistent as of no time.
	inconsistent []string
	// recoverable, when not zero, is the time the secondary recovers to
	// while a resync holds it behind what it acknowledged.
	recoverable int64
}

func (m *memMover) Stats() mover.Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return mover.Stats{Connected: m.connected, Acked: transport.Position{Time: m.acked, Recoverable: m.recoverable, Inconsistent: m.inconsistent}, LastAckedTime: m.progress,
		Refusals: m.refusals, LastRefusal: "secondary refused the session: " + m.lastRefusal.Reason, LastRefusalPasses: m.lastRefusal.Passing,
		LastRefusalKind: m.lastRefusal.Kind, LastRefusalReason: m.lastRefusal.Reason, StaleRefusals: m.stale, LastStaleRefusal: m.lastStale, Base: transport.Position{Time: m.base}, Based: true}
}

// refuse ends the session as the secondary's refusal r would; what is
// held stays held (the mover would send it again).
func (m *memMover) refuse(r transport.Refusal) {
	m.mu.Lock()
	m.connected = false
	m.refusals++
	m.lastRefusal = r
	if r.Kind == transport.RefusalStale {
		m.stale++
		m.lastStale = r.Reason
	}
	m.mu.Unlock()
}

// hold makes the secondary recover, from now until release, to what it
// acknowledged so far, as a resync of another volume beginning now would.
func (m *memMover) hold() {
	m.mu.Lock()
	m.recoverable = m.acked
	m.mu.Unlock()
}

// release ends the hold: the secondary applies what it journaled.
func (m *memMover) release() {
	m.mu.Lock()
	m.recoverable = 0
	m.mu.Unlock()
}

func (m *memMover) setConnected(up bool) {
	m.mu.Lock()
	m.connected = up
	if up {
		m.progress = time.Now()
	}
	m.mu.Unlock()
}

// ship acknowledges every captured update and moves the consistency time
// past them, as the secondary's acknowledgement would.
func (m *memMover) ship() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.subs {
		for _, u := range s.side.Drain() {
			if m.al != nil {
				m.al.Done(u.Volume, int64(u.Offset), int64(u.Length))
			}
			s.side.Release(sidefile.Cost(int(u.Length)))
		}
		m.acked = max(m.acked, s.Stamp())
	}
}

func (m *memMover) Abandoned() []recordset.Update {
	var ups []recordset.Update
	for _, s := range m.subs {
		s.mu.Lock()
		ups = append(ups, s.abandoned...)
		s.abandoned = nil
		s.mu.Unlock()
	}
	return ups
}

func (m *memMover) Drop(mark func(recordset.Update)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.subs {
		for _, u := range s.side.Drain() {
			mark(u)
			s.side.Release(sidefile.Cost(int(u.Length)))
		}
		// A copy still reading is given up at once (its room went with it).
		s.mu.Lock()
		reading := s.reading
		s.reading = nil
		s.mu.Unlock()
		for _, u := range reading {
			mark(u)
		}
	}
}

// rig is a manager over in-memory twins: one subsystem "ss" holding the given
// volumes, each of size, with an activity log in dir.
type rig struct {
	t    testing.TB
	fs   disk.FS // the activity log's
	dir  string
	ss   *memSubsystem
	mv   *memMover
	al   *actlog.Log
	vols []Volume
	mg   *Manager
	opts Options
}

const twinRegion = bitmap.DefaultRegion

func newRig(t testing.TB, size, sidefileLimit int64, names ...string) *rig {
	t.Helper()
	return newRigOn(t, nil, size, sidefileLimit, names...)
}

// newRigOn is newRig with its activity log on fsys.
func newRigOn(t testing.TB, fsys disk.FS, size, sidefileLimit int64, names ...string) *rig {
	t.Helper()
	r := &rig{t: t, fs: fsys, dir: t.TempDir()}
	r.ss = newMemSubsystem("ss", sidefileLimit)
	r.mv = &memMover{subs: []*memSubsystem{r.ss}, connected: true}
	for _, n := range names {
		r.vols = append(r.vols, Volume{Name: n, Subsystem: r.ss, Size: size})
	}
	r.opts = Options{Dir: r.dir, SuspendAfter: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	r.openLog()
	r.open()
	return r
}

func (r *rig) logPath() string { return r.dir + "/activity.log" }

// openLog opens the activity log as the primary does at start, handing its
// recovered marks to the next open.
func (r *rig) openLog() {
	r.t.Helper()
	sizes := map[string]int64{}
	for _, v := range r.vols {
		sizes[v.Name] = v.Size
	}
	al, rec, err := actlog.OpenFS(r.fs, r.logPath(), sizes, actlog.DefaultRegion)
	if err != nil {
		r.t.Fatalf("activity log: %v", err)
	}
	r.al = al
	r.opts.ActivityLog, r.opts.Recovered = al, rec
	r.ss.mu.Lock()
	r.ss.al = al
	r.ss.mu.Unlock()
	r.mv.mu.Lock()
	r.mv.al = al
	r.mv.mu.Unlock()
}

func (r *rig) open() {
	r.t.Helper()
	r.mv.mu.Lock()
	r.mv.base = r.mv.acked
	r.mv.mu.Unlock()
	mg, err := Open(r.opts, r.mv, r.vols)
	if err != nil {
		r.t.Fatalf("open: %v", err)
	}
	r.mg = mg
}

// crash forgets the manager and the log without a clean stop, and opens them
// again from what is on disk, as a primary restarted after kill -9 does.
func (r *rig) crash() {
	r.t.Helper()
	r.crashed()
	r.open()
}

// crashed is crash up to the manager's Open, which the test does: the
// subsystem forgets which volumes it tracked, and the activity log is
// opened again, its recovered marks for the Open.
func (r *rig) crashed() {
	r.t.Helper()
	r.ss.mu.Lock()
	r.ss.tracking = map[string]*bitmap.Bitmap{}
	r.ss.mu.Unlock()
	r.openLog()
}

func (r *rig) write(vol string, off, length int64) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.ss.write(ctx, vol, off, length); err != nil {
		r.t.Fatalf("write %s [%d, +%d): %v", vol, off, length, err)
	}
}

func (r *rig) pair(vol string) Pair {
	for _, p := range r.mg.Pairs() {
		if p.Volume == vol {
			return p
		}
	}
	r.t.Fatalf("no pair %s", vol)
	return Pair{}
}

// waitState polls until vol is in state want, failing after d.
func (r *rig) waitState(vol string, want State, d time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		p := r.pair(vol)
		if p.State == want {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s still %s after %v, want %s (copied %d of %d)", vol, p.State, d, want, p.Copied, p.CopyTotal)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pendingRegions returns the regions a resync of vol would copy now: the copy
// bitmap of a pending pair or the change bitmap of a suspended one.
func (r *rig) pendingRegions(vol string) *bitmap.Bitmap {
	r.mg.mu.Lock()
	defer r.mg.mu.Unlock()
	switch r.mg.pairs[vol].State {
	case Pending:
		return r.mg.copies[vol]
	case Suspended:
		return r.ss.Tracking(vol)
	}
	return nil
}

func marked(bm *bitmap.Bitmap, off int64) bool {
	if bm == nil {
		return false
	}
	r := off / bm.Region()
	got, _, _, ok := bm.Next(r)
	return ok && got == r
}

// saveAndClean saves the pair state, then cleans the activity log of the
// regions it no longer needs, as Run does.
func (r *rig) saveAndClean() {
	r.t.Helper()
	if err := r.mg.save(false); err != nil {
		r.t.Fatal(err)
	}
	if err := r.al.Clean(); err != nil {
		r.t.Fatal(err)
	}
}

// settle runs the manager's steps until every pending pair is duplex.
func (r *rig) settle() {
	r.t.Helper()
	// The copies go one pair after another: the wait is for a pair to
	// get on, not for all of them, which at hundreds of pairs under the
	// race detector on a loaded machine takes longer than 5 s.
	deadline, left := time.Now().Add(5*time.Second), -1
	for {
		r.mg.copyOne(context.Background())
		r.mv.ship()
		r.mg.promote()
		pending := 0
		for _, p := range r.mg.Pairs() {
			if p.State == Pending {
				pending++
			}
		}
		if pending == 0 {
			return
		}
		if pending != left {
			deadline, left = time.Now().Add(5*time.Second), pending
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d pairs pending, none duplex for 5s: %+v", pending, r.mg.Pairs())
		}
	}
}

// journalHeld acknowledges every captured update without moving the
// consistency time past them, as the secondary does while a resync holds its
// volumes: the updates are journaled there, but the group that ends the
// resync has not arrived.
func (m *memMover) journalHeld() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.subs {
		for _, u := range s.side.Drain() {
			if m.al != nil {
				m.al.Done(u.Volume, int64(u.Offset), int64(u.Length))
			}
			s.side.Release(sidefile.Cost(int(u.Length)))
		}
	}
}
