// Package subsystem is the write path of the primary storage subsystem: step (a)
// of the method, time stamping each write I/O operation, and the capture of its
// update into the sidefile of step (b).
//
// A write reserves sidefile space (waiting if it is full), then, under one
// ordering lock, takes its timestamp from the site's common timer and appends
// its update to the sidefile, so sidefile order is timestamp order. The data
// mover drains the sidefile under the same lock and takes the subsystem's
// horizon there: every write stamped at or before the horizon is in what it
// drained, and every later write will carry a later stamp.
//
// Only then does the write reach the primary volume. Two in-flight writes that
// overlap land on the volume in timestamp order (the later one waits for the
// earlier), so the primary and the secondary agree on which one won. A
// write the volume then fails is replicated all the same: it is reported
// (FailedWrites), for its pair to be suspended and the range copied again.
package subsystem

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"duplex/bitmap"
	"duplex/recordset"
	"duplex/sidefile"
	"duplex/timer"
	"duplex/volume"
)

// Subsystem is a group of volumes that share one sidefile and one update
// sequence-number space.
type Subsystem struct {
	id      string
	timer   *timer.Timer
	side    *sidefile.Sidefile
	volumes map[string]*volume.Volume
	names   []string

	mu       sync.Mutex // the ordering lock
	inflight []*inflight
	spare    []*inflight // finished records, for reuse
	// ended holds the volumes whose updates EndUpdates ended: a later
	// update of one is refused before it is captured.
	ended map[string]bool
	// tracking holds the change bitmap of each suspended volume: its writes
	// are not captured, only recorded as changed regions. It changes under
	// mu and trackingMu both; Tracking reads it under trackingMu alone, so
	// that the pair manager (and status behind it) never waits for mu,
	// which a write holds while the timer writes its mark to disk.
	tracking   map[string]*bitmap.Bitmap
	trackingMu sync.Mutex
	// filling are the copies captured whose data is still being read, by
	// their done channels; Drain waits for them.
	filling map[chan struct{}]*inflight
	gen     map[string]uint64 // writes stamped per volume, for hole copies
	actlog  ActivityLog

	// largeWrites counts the writes of volume.ThroughMin or more on their
	// way to the volumes (largeWrite).
	largeWrites atomic.Int32

	// failed holds the captured updates whose writes to the volume failed,
	// until FailedWrites takes them.
	failedMu sync.Mutex
	failed   []FailedWrite

	// beforeVolumeWrite, if set (by tests, SetBeforeVolumeWrite), runs
	// after an update is captured and before it reaches the volume.
	beforeVolumeWrite func(vol string)
	// beforeCopyRead, if set (SetBeforeCopyRead), runs before a copy
	// reads its data from the volume.
	beforeCopyRead func(vol string, off, length int64)
}

// ActivityLog records on disk which regions may hold updates the secondary
// has not journaled, before those updates reach the volume.
type ActivityLog interface {
	Mark(vol string, off, length int64) error     // a write: counted, cleared once acknowledged and idle
	MarkCopy(vol string, off, length int64) error // a copy update: counted, not kept in use
	Stick(vol string, off, length int64) error    // a suspended pair's write
	Done(vol string, off, length int64)           // uncounts a Mark or MarkCopy
	// Wrote says a Mark's write is done with the volume (written, failed
	// or never made): until then a flush of the volume does not cover it.
	Wrote(vol string, off, length int64)
}

// ErrSuspended is returned for a copy of a suspended volume: its secondary
// copy stays as it was when it was suspended.
var ErrSuspended = errors.New("volume is suspended")

// ErrUpdatesEnded is returned for an update of a volume whose updates
// EndUpdates ended: its site stops, and closes it.
var ErrUpdatesEnded = errors.New("the volume takes no more updates: its site stops")

// SetActivityLog makes every later update mark its regions in l first.
func (s *Subsystem) SetActivityLog(l ActivityLog) {
	s.mu.Lock()
	s.actlog = l
	s.mu.Unlock()
}

// How an update marks the activity log.
const (
	markWrite = iota
	markCopy
	markSticky
)

func (s *Subsystem) mark(vol string, off, length int64, how int) error {
	s.mu.Lock()
	l := s.actlog
	s.mu.Unlock()
	return s.markIn(l, vol, off, length, how)
}

// markIn is mark in l, read by the caller under s.mu.
func (s *Subsystem) markIn(l ActivityLog, vol string, off, length int64, how int) error {
	if l == nil {
		return nil
	}
	var err error
	switch how {
	case markSticky:
		err = l.Stick(vol, off, length)
	case markCopy:
		err = l.MarkCopy(vol, off, length)
	default:
		err = l.Mark(vol, off, length)
	}
	if err != nil {
		return fmt.Errorf("subsystem %s: %w", s.id, err)
	}
	return nil
}

// nowMarker is an ActivityLog that marks a write that must not wait only
// where its regions are marked on disk already (actlog.Log).
type nowMarker interface {
	MarkNow(vol string, off, length int64) bool
	StickNow(vol string, off, length int64) bool
}

// markNow is markIn for a write that must not wait: false, it marked
// nothing, as the marks would have to be written first.
func markNow(l ActivityLog, vol string, off, length int64, how int) bool {
	if l == nil {
		return true
	}
	m, ok := l.(nowMarker)
	switch {
	case !ok:
		return false
	case how == markSticky:
		return m.StickNow(vol, off, length)
	}
	return m.MarkNow(vol, off, length)
}

// unmark uncounts a Mark or MarkCopy whose update was not captured after
// all: otherwise the region would stay marked until a restart.
func (s *Subsystem) unmark(vol string, off, length int64) {
	s.mu.Lock()
	l := s.actlog
	s.mu.Unlock()
	if l != nil {
		l.Done(vol, off, length)
	}
}

type inflight struct {
	volume     string
	start, end int64
	// done is closed once the update has reached the volume (or, for a
	// copy, its data has been read). A write makes it only when a later
	// overlapping update has to wait for it, which is rare: most writes
	// then make no channel at all.
	done chan struct{}
	// data is a write's buffer, which its pwrite reads until finish;
	// recycle says the mover has handed it back meanwhile, and finish
	// recycles it.
	data    []byte
	recycle bool
	// stamp is a copy's timestamp, which names its update among those
	// drained; abandoned says a drain gave its read up (see DrainWithin).
	stamp     int64
	abandoned bool
	// captured is when a copy was captured (monotonic): its read's wait
	// runs from then, not from the drain that takes it (see Taken.Newest).
	captured time.Time
}

// maxSpare bounds the finished inflight records kept for reuse.
const maxSpare = 64

// start records an update in flight on [start, end) of vol, reusing a
// finished record. Called with s.mu held.
func (s *Subsystem) start(vol string, start, end int64) *inflight {
	var me *inflight
	if n := len(s.spare); n > 0 {
		me, s.spare = s.spare[n-1], s.spare[:n-1]
	} else {
		me = new(inflight)
	}
	*me = inflight{volume: vol, start: start, end: end}
	s.inflight = append(s.inflight, me)
	return me
}

// overlaps says an update in flight overlaps [start, end) of vol. Called
// with s.mu held.
func (s *Subsystem) overlaps(vol string, start, end int64) bool {
	for _, f := range s.inflight {
		if f.volume == vol && f.start < end && start < f.end {
			return true
		}
	}
	return false
}

// overlapping appends to before the done channels of the updates in flight
// that overlap [start, end) of vol, making those not made yet. Called with
// s.mu held.
func (s *Subsystem) overlapping(vol string, start, end int64, before []chan struct{}) []chan struct{} {
	for _, f := range s.inflight {
		if f.volume == vol && f.start < end && start < f.end {
			if f.done == nil {
				f.done = make(chan struct{})
			}
			before = append(before, f.done)
		}
	}
	return before
}

// finish ends the update me started and wakes whoever waits for it. Once it
// is out of s.inflight no one can find it, and those waiting hold only its
// channel: the record is kept for reuse. It reports whether a drain gave
// up me's read (a copy's) meanwhile.
func (s *Subsystem) finish(me *inflight) (abandoned bool) {
	s.mu.Lock()
	abandoned = me.abandoned
	for i, f := range s.inflight {
		if f == me {
			s.inflight = append(s.inflight[:i], s.inflight[i+1:]...)
			break
		}
	}
	done := me.done
	if done != nil {
		delete(s.filling, done)
	}
	if me.recycle {
		buffers.put(me.data)
	}
	*me = inflight{}
	if len(s.spare) < maxSpare {
		s.spare = append(s.spare, me)
	}
	s.mu.Unlock()
	if done != nil {
		close(done)
	}
	return abandoned
}

// Recycle takes back the data buffers of ups, updates of this subsystem
// that the secondary has journaled, for later writes to reuse. The caller
// promises that nothing of its own reads them any more (the mover calls it
// only between its sends, never while it encodes). A write whose update
// was journaled before its own pwrite reached the volume (a write stalled
// on the disk, or behind an overlapping one) still reads its buffer: that
// one is taken back when the pwrite is done.
func (s *Subsystem) Recycle(ups []recordset.Update) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range ups {
		u := &ups[i]
		if u.Kind != recordset.KindWrite || cap(u.Data) == 0 {
			continue
		}
		if f := s.writing(u.Data); f != nil {
			f.recycle = true
			continue
		}
		buffers.put(u.Data)
	}
}

// writing returns the write in flight whose pwrite reads b, or nil. Called
// with s.mu held.
func (s *Subsystem) writing(b []byte) *inflight {
	for _, f := range s.inflight {
		if cap(f.data) > 0 && &f.data[:1][0] == &b[:1][0] {
			return f
		}
	}
	return nil
}

// New returns a subsystem over the given volumes.
func New(id string, t *timer.Timer, side *sidefile.Sidefile, volumes map[string]*volume.Volume, order []string) *Subsystem {
	return &Subsystem{id: id, timer: t, side: side, volumes: volumes, names: order,
		tracking: map[string]*bitmap.Bitmap{}, filling: map[chan struct{}]*inflight{}, gen: map[string]uint64{}}
}

// ID returns the subsystem id.
func (s *Subsystem) ID() string { return s.id }

// Sidefile returns the subsystem's sidefile.
func (s *Subsystem) Sidefile() *sidefile.Sidefile { return s.side }

// Volume returns a volume by name.
func (s *Subsystem) Volume(name string) (*volume.Volume, bool) {
	v, ok := s.volumes[name]
	return v, ok
}

// VolumeNames returns the subsystem's volume names in configuration order.
func (s *Subsystem) VolumeNames() []string { return s.names }

// MaxUpdate is the most data one captured update carries. A larger write is
// captured as several updates of consecutive ranges, each stamped, ordered
// and performed like a write of its own (a block device promises no
// atomicity for a write anyway; the client's acknowledgement waits for all of
// them). Every update then fits a record set the secondary accepts
// (recordset.DefaultLimits carries 64 MiB of payload), and a write larger
// than the sidefile streams through it.
const MaxUpdate = 4 << 20

// pieceSize is the most data a write captures in one update: MaxUpdate, and
// at most a quarter of the sidefile, so that one piece can be reserved while
// earlier ones are on their way to the secondary.
func (s *Subsystem) pieceSize() int {
	n := min(MaxUpdate, int((s.side.Limit()-sidefile.EntryOverhead)/4))
	return max(n&^4095, 4096)
}

// Write stamps, captures and performs a write. It returns once the update is in
// the sidefile and the data is on the primary volume: that is when it may be
// acknowledged. data is copied; the caller may reuse it.
func (s *Subsystem) Write(ctx context.Context, vol string, data []byte, off int64) error {
	return s.write(ctx, vol, data, off, false)
}

// WriteOwned is Write of data the subsystem keeps, not copies: the caller
// hands it over and must not touch it again. The update holds it until the
// secondary has journaled it; a 1 MiB write then costs no copy of its
// megabyte on its way to the sidefile.
func (s *Subsystem) WriteOwned(ctx context.Context, vol string, data []byte, off int64) error {
	return s.write(ctx, vol, data, off, true)
}

// Prompt says a write of n bytes at off to vol now would wait for nothing
// but the volume: not paced, the sidefile has room, its activity log's
// regions are marked on disk, no overlapping update under way, its stamp
// not waiting for the timer's lease. It may say
// no where the write would not have waited; the state may change before
// the write, so a write it promised may still wait, briefly.
func (s *Subsystem) Prompt(vol string, off int64, n int) bool {
	if v, ok := s.volumes[vol]; !ok || off < 0 || n < 0 || int64(n) > v.Size() || off > v.Size()-int64(n) {
		// The write is refused, before it is captured: not for Prompt
		// to look up (the activity log has no region there).
		return false
	}
	if s.timer.StampWaits() {
		// Its stamp would wait for the write of the lease's mark, and
		// while that disk hangs a write waiting so holds the ordering
		// lock, which the lines below take: the server's read loop that
		// asks would wait with them, its reads behind.
		return false
	}
	s.mu.Lock()
	bm, l := s.tracking[vol], s.actlog
	busy := s.overlaps(vol, off, off+int64(n))
	s.mu.Unlock()
	if busy {
		return false
	}
	if bm == nil && !s.side.Prompt(sidefile.Cost(n)) {
		return false
	}
	if l != nil {
		m, ok := l.(interface {
			MarkedOnDisk(vol string, off, length int64) bool
		})
		if !ok || !m.MarkedOnDisk(vol, off, int64(n)) {
			return false
		}
	}
	return true
}

// errWouldWait is update's refusal of a write that must not wait (now)
// and would: nothing of it was captured.
var errWouldWait = errors.New("the write would wait")

// WriteNow is WriteOwned of a write Prompt promised, for a writer that must
// not wait (the NBD server's read loop, which holds up its connection's
// other requests meanwhile): where the state moved since the promise so
// that the write would wait after all (another writer took the sidefile's
// room, a region's mark must be written, an overlapping update got under
// way, its stamp would wait for the timer's lease, or it is larger than one
// update), it captures nothing and says so
// (wait): data is still the caller's, for a WriteOwned that waits.
func (s *Subsystem) WriteNow(vol string, data []byte, off int64) (wait bool, err error) {
	if len(data) > s.pieceSize() || s.timer.StampWaits() {
		return true, nil
	}
	err = s.update(context.Background(), recordset.Update{Volume: vol, Kind: recordset.KindWrite, Length: uint64(len(data)), Data: data}, off, updateNow)
	if err == errWouldWait {
		return true, nil
	}
	return false, err
}

func (s *Subsystem) write(ctx context.Context, vol string, data []byte, off int64, owned bool) error {
	if piece := s.pieceSize(); len(data) > piece {
		if v, ok := s.volumes[vol]; ok && (off < 0 || int64(len(data)) > v.Size() || off > v.Size()-int64(len(data))) {
			// Refused whole, before any piece is captured.
			return fmt.Errorf("subsystem %s: volume %s: [%d, +%d) of %d bytes: %w", s.id, vol, off, len(data), v.Size(), volume.ErrOutOfRange)
		}
		for len(data) > 0 {
			n := min(piece, len(data))
			// An owned buffer's pieces are its own slices: each update
			// holds its part of it.
			if err := s.write(ctx, vol, data[:n:n], off, owned); err != nil {
				return err
			}
			data, off = data[n:], off+int64(n)
		}
		return nil
	}
	buf := data
	if !owned {
		buf = buffers.get(len(data))
		copy(buf, data)
	}
	return s.update(ctx, recordset.Update{Volume: vol, Kind: recordset.KindWrite, Length: uint64(len(data)), Data: buf}, off, 0)
}

// WriteZeroes makes a range read back as zeroes, replicated like a write.
func (s *Subsystem) WriteZeroes(ctx context.Context, vol string, off, length int64) error {
	return s.update(ctx, recordset.Update{Volume: vol, Kind: recordset.KindZeroes, Length: uint64(length)}, off, 0)
}

// WriteZeroesAllocated is WriteZeroes that keeps the range allocated on the
// primary volume (Volume.ZeroAllocated): a client's WRITE_ZEROES with
// NBD_CMD_FLAG_NO_HOLE, which must leave it fully provisioned. It is
// replicated as any zeroes.
func (s *Subsystem) WriteZeroesAllocated(ctx context.Context, vol string, off, length int64) error {
	return s.update(ctx, recordset.Update{Volume: vol, Kind: recordset.KindZeroes, Length: uint64(length)}, off, updateAllocated)
}

// Trim discards a range, replicated like a write.
func (s *Subsystem) Trim(ctx context.Context, vol string, off, length int64) error {
	return s.update(ctx, recordset.Update{Volume: vol, Kind: recordset.KindTrim, Length: uint64(length)}, off, 0)
}

// Flush makes every completed write to vol durable on the primary volume.
func (s *Subsystem) Flush(vol string) error {
	v, ok := s.volumes[vol]
	if !ok {
		return fmt.Errorf("subsystem %s: no volume %q", s.id, vol)
	}
	return v.Flush()
}

// captureSumFill is the share of the sidefile's unpaced bytes from which a
// large write is checksummed at capture (mover's deferFill: from there the
// mover sends its record sets as they come, within an interval).
const captureSumFill = 0.9

// updateMode says how update performs an update.
type updateMode uint8

const (
	// updateNow: capture nothing and return errWouldWait where the
	// update would wait for anything but the volume.
	updateNow updateMode = 1 << iota
	// updateAllocated: zeroes that keep their range allocated on the
	// volume (ZeroAllocated).
	updateAllocated
)

// update captures and performs u at off, as mode says.
func (s *Subsystem) update(ctx context.Context, u recordset.Update, off int64, mode updateMode) error {
	now := mode&updateNow != 0
	v, ok := s.volumes[u.Volume]
	if !ok {
		return fmt.Errorf("subsystem %s: no volume %q", s.id, u.Volume)
	}
	// Refuse a bad range before it is captured: the secondary must never receive
	// an update the primary could not perform.
	if off < 0 || u.Length > uint64(v.Size()) || off > v.Size()-int64(u.Length) {
		return fmt.Errorf("subsystem %s: volume %s: [%d, +%d) of %d bytes: %w", s.id, u.Volume, off, u.Length, v.Size(), volume.ErrOutOfRange)
	}
	u.Offset = uint64(off)
	s.mu.Lock()
	bm, l, ended := s.tracking[u.Volume], s.actlog, s.ended[u.Volume]
	s.mu.Unlock()
	if ended {
		return fmt.Errorf("subsystem %s: volume %s: %w", s.id, u.Volume, ErrUpdatesEnded)
	}
	if bm == nil && !now && u.Kind == recordset.KindWrite && len(u.Data) >= recordset.SplitMin && s.side.Holds(captureSumFill) {
		// A large write of a stream the mover sends as it comes is
		// checksummed here, before the sidefile's pacing may hold it: just
		// read from the client it is still in the cache, and its CRC-32C
		// costs a quarter of what the mover's encoding paid an interval
		// later, reading it from memory. A burst's, below that fill, is
		// not: its record sets wait for the burst's end (mover's
		// deferral), and the CRC taken here ran on the CPU the burst's
		// writes need, 15 % of a pinned primary's CPU a MiB in the bench's
		// burst (bench/RESULTS.md); the mover's after the burst is not.
		u.Checksum()
	}
	var held time.Duration
	if bm == nil && now && !s.side.TryReserve(sidefile.Cost(len(u.Data))) {
		return errWouldWait
	}
	if bm == nil && !now {
		var err error
		if held, err = s.side.Reserve(ctx, sidefile.Cost(len(u.Data))); err != nil {
			return fmt.Errorf("subsystem %s: %w", s.id, err)
		}
	}
	// The region is marked on disk before the update can reach the volume:
	// after a crash, it is among the regions copied again.
	how := markWrite
	if bm != nil {
		how = markSticky
	}
	var err error
	if now && !markNow(l, u.Volume, off, int64(u.Length), how) {
		err = errWouldWait
	} else if !now {
		err = s.markIn(l, u.Volume, off, int64(u.Length), how)
	}
	if err != nil {
		if bm == nil {
			s.side.Release(sidefile.Cost(len(u.Data)))
		}
		return err
	}

	if bm == nil && u.Kind == recordset.KindWrite && len(u.Data) < recordset.SplitMin {
		// Checksummed now, just read from the application, while in the
		// cache: the mover sends it an interval later, when reading it
		// again would cost a pass from memory and copying it another.
		u.Checksum()
	}
	var before []chan struct{}
	s.mu.Lock()
	if s.ended[u.Volume] {
		// Held (its mark, the sidefile's room) as the site's stop
		// ended the volume's updates: it would reach the volume
		// unseen by the stop, as it closes it.
		s.mu.Unlock()
		if bm == nil {
			s.side.Release(sidefile.Cost(len(u.Data)))
			s.unmark(u.Volume, off, int64(u.Length))
			if l != nil {
				l.Wrote(u.Volume, off, int64(u.Length))
			}
		}
		return fmt.Errorf("subsystem %s: volume %s: %w", s.id, u.Volume, ErrUpdatesEnded)
	}
	if cur := s.tracking[u.Volume]; cur != bm || now && s.overlaps(u.Volume, off, off+int64(u.Length)) {
		// The pair was suspended or resumed while this write waited:
		// capture it the way the pair is now. Or a write that must not
		// wait would wait for an overlapping one: it is not captured.
		s.mu.Unlock()
		if bm == nil {
			s.side.Release(sidefile.Cost(len(u.Data)))
			s.unmark(u.Volume, off, int64(u.Length))
			if l != nil {
				l.Wrote(u.Volume, off, int64(u.Length))
			}
		}
		if cur == bm {
			return errWouldWait
		}
		return s.update(ctx, u, off, mode)
	}
	u.Timestamp = s.timer.Now()
	s.gen[u.Volume]++
	if bm != nil {
		// Mark before the write reaches the volume, so a region can never
		// hold a change the bitmap does not show.
		bm.Set(off, int64(u.Length))
	} else {
		s.side.Append(u)
	}
	before = s.overlapping(u.Volume, off, off+int64(u.Length), before)
	me := s.start(u.Volume, off, off+int64(u.Length))
	hook := s.beforeVolumeWrite
	if u.Kind == recordset.KindWrite {
		// Captured, the buffer may be journaled and handed back before
		// the pwrite below has read it: Recycle finds it here. A
		// suspended pair's write is not captured: it is the write's
		// alone, and goes back once written.
		me.data, me.recycle = u.Data, bm != nil
	}
	s.mu.Unlock()

	// An earlier overlapping write must reach the volume first. Its outcome does
	// not matter here: it finishes (successfully or not) before we go on.
	for _, ch := range before {
		<-ch
	}
	large := u.Kind == recordset.KindWrite && len(u.Data) >= volume.ThroughMin
	if large {
		s.largeWrites.Add(1)
	}
	if hook != nil {
		hook(u.Volume)
	}
	switch u.Kind {
	case recordset.KindWrite:
		if large && !v.Device() && held == 0 && s.largeWrites.Load() > 1 {
			// Past the page cache where the file system allows it,
			// while another large write is on its way too: in a
			// burst of large writes their copy into fresh page cache
			// cost the primary as much as reading them from the
			// socket, and the data's copy for replication is the
			// sidefile's, not the page cache's. Alone, a writer would
			// wait for the device's round trip, longer than the copy
			// (a 1 MiB writer at queue depth 1: 25 % fewer writes),
			// where several in flight overlap theirs (bench/RESULTS.md).
			// Not a write the sidefile held back (paced, or waiting
			// for room): the secondary sets the rate then, not the
			// primary's CPU, and a direct write takes the device's
			// bandwidth at once where the page cache takes a range's
			// rewrites once and writes them back later; with a disk
			// the secondary shares, paced direct writes cost its
			// apply rate.
			// Not on a block device: the kernel serialises a file's
			// buffered writes with its direct ones, but not a device's,
			// and a user's small write beside a direct one, into a
			// large folio read ahead meanwhile, would leave the folio's
			// old copy of the direct write's range in the page cache.
			err = v.WriteThrough([][]byte{u.Data}, off)
		} else {
			err = v.WriteAt(u.Data, off)
		}
		if large {
			s.largeWrites.Add(-1)
		}
	case recordset.KindZeroes:
		if mode&updateAllocated != 0 {
			err = v.ZeroAllocated(off, int64(u.Length))
		} else {
			err = v.WriteZeroes(off, int64(u.Length))
		}
	case recordset.KindTrim:
		err = v.Trim(off, int64(u.Length))
	}
	s.finish(me)
	if bm == nil && l != nil {
		l.Wrote(u.Volume, off, int64(u.Length))
	}
	if err != nil {
		// The update is already captured and will be replicated; a failed
		// write leaves the range undefined on the primary, which the block
		// protocol allows, but the secondary then holds the intended data
		// where the volume may hold the old: the pair manager suspends the
		// pair, the range to copy again (see FailedWrites). A suspended
		// pair's write is in its bitmap already.
		if bm == nil {
			s.failedMu.Lock()
			s.failed = append(s.failed, FailedWrite{Volume: u.Volume, Offset: off, Length: int64(u.Length), Err: err})
			s.failedMu.Unlock()
		}
		return fmt.Errorf("subsystem %s: %w", s.id, err)
	}
	return nil
}

// FailedWrite is a captured update whose write to the primary volume
// failed (Err): the secondary gets it as written, which the volume may not
// hold.
type FailedWrite struct {
	Volume         string
	Offset, Length int64
	Err            error
}

// AddFailedWrite reports a range whose writes the volume took but may not
// hold, as a write it failed: a flush of the volume failed (a writeback
// error) before the range's data was known to be on its disk.
func (s *Subsystem) AddFailedWrite(fw FailedWrite) {
	s.failedMu.Lock()
	s.failed = append(s.failed, fw)
	s.failedMu.Unlock()
}

// FailedWrites returns the captured updates whose writes to the volume
// failed since the last call.
func (s *Subsystem) FailedWrites() []FailedWrite {
	s.failedMu.Lock()
	defer s.failedMu.Unlock()
	f := s.failed
	s.failed = nil
	return f
}

// Drain hands the data mover every captured update and the subsystem's
// horizon: no update captured later has a timestamp at or below it. It
// waits for the copies among them to read their data, however long.
func (s *Subsystem) Drain() (updates []recordset.Update, horizon int64, readTime time.Time) {
	updates, horizon, readTime, _ = s.DrainWithin(-1)
	return updates, horizon, readTime
}

// ErrCopyAbandoned is returned by a copy whose read of the volume a drain
// gave up (see DrainWithin): its update never ships, and its region is to
// be copied again.
var ErrCopyAbandoned = errors.New("copy given up: its read of the primary volume outlasted the data mover's wait")

// ErrCopyRead is returned, wrapping the volume's error, by a copy whose
// read of the volume failed (a failing disk): its update ships with its
// data zeroes, and its region is to be copied again once the volume reads.
var ErrCopyRead = errors.New("read of the primary volume failed")

// DrainWithin is Drain waiting at most wait (negative: for ever) for the
// copies among the updates to read their data from the volume. The data
// is theirs as of their timestamp (later overlapping writes wait for the
// read), so it is safe to wait for; but a read that hangs would hold every
// subsystem's record sets with it, the secondary's consistency time, and
// the writers once the sidefiles fill. A copy still reading at the bound
// is given up: it is left out of updates (its buffer is the read's, and it
// cannot ship later, behind updates stamped after it that the secondary
// applies first), its sidefile room is released, the later updates of its
// region no longer wait for its read, its Copy returns ErrCopyAbandoned,
// and it is returned in abandoned without its data, so that the caller
// has its region copied again. The copy is no write a client was
// acknowledged: what the secondary lacks without it is part of a copy
// under way, which the pair's state covers (see package pair).
func (s *Subsystem) DrainWithin(wait time.Duration) (updates []recordset.Update, horizon int64, readTime time.Time, abandoned []recordset.Update) {
	d := s.Take()
	if d.Reading() {
		var bound <-chan time.Time
		if wait >= 0 {
			t := time.NewTimer(max(wait-time.Since(d.Newest()), 0))
			defer t.Stop()
			bound = t.C
		}
		if !d.Wait(bound, nil) {
			abandoned = d.GiveUp()
		}
	}
	return d.Updates, d.Horizon, time.Now(), abandoned
}

// Taken is what Take handed over: DrainWithin in steps, so that a caller
// draining several subsystems waits for the copies of all of them at once
// (one bound for every subsystem, not one each after the other).
type Taken struct {
	Updates []recordset.Update
	Horizon int64
	s       *Subsystem
	reading []chan struct{}
	// newest is the latest capture among the copies reading.
	newest time.Time
}

// Take hands over every captured update and the subsystem's horizon, as
// DrainWithin does, without waiting for the copies among them to read their
// data: Wait does, and GiveUp gives up those whose read outlasts it.
func (s *Subsystem) Take() Taken {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := Taken{Updates: s.side.Drain(), Horizon: s.timer.Now(), s: s}
	for ch, f := range s.filling {
		d.reading = append(d.reading, ch)
		if f.captured.After(d.newest) {
			d.newest = f.captured
		}
	}
	return d
}

// Newest returns when the newest of the copies taken that were reading
// was captured (zero if none). A wait for their reads is timed from then,
// not from the take: a read already waited for as long (by the start after
// a crash, which gave it up) is given up at once rather than waited for
// again, and the newest copy still has the whole wait.
func (d *Taken) Newest() time.Time { return d.newest }

// Reading reports whether copies taken were reading their data when taken.
func (d *Taken) Reading() bool { return len(d.reading) > 0 }

// Wait waits for the reads of the copies taken until bound fires or stop
// is closed (nil: for ever), and reports whether they all ended.
func (d *Taken) Wait(bound <-chan time.Time, stop <-chan struct{}) bool {
	for _, ch := range d.reading {
		select {
		case <-ch:
		case <-bound:
			return false
		case <-stop:
			return false
		}
	}
	return true
}

// GiveUp gives up the copies taken whose reads have not ended (see
// DrainWithin), leaves them out of d.Updates and returns them without
// their data.
func (d *Taken) GiveUp() (abandoned []recordset.Update) {
	if len(d.reading) == 0 {
		return nil
	}
	d.Updates, abandoned = d.s.abandon(d.Updates, d.reading)
	return abandoned
}

// abandon gives up the copies of reading whose reads are not done yet, and
// returns updates without them, and them without their data.
func (s *Subsystem) abandon(updates []recordset.Update, reading []chan struct{}) (kept, abandoned []recordset.Update) {
	stamps := map[int64]bool{}
	s.mu.Lock()
	for _, ch := range reading {
		// Under s.mu, a copy is either done (finish took it out of
		// filling first) or given up here: its Copy sees which.
		if f, ok := s.filling[ch]; ok {
			f.abandoned = true
			delete(s.filling, ch)
			stamps[f.stamp] = true
			// Its data never ships, so no later update of its region
			// needs it read first: those waiting go on, and no later one
			// finds it, rather than wait as long as the read hangs. The
			// record stays its Copy's until finish.
			s.inflight = slices.DeleteFunc(s.inflight, func(g *inflight) bool { return g == f })
			f.done = nil
			close(ch)
		}
	}
	s.mu.Unlock()
	if len(stamps) == 0 {
		return updates, nil
	}
	kept = updates[:0]
	for _, u := range updates {
		if u.Kind == recordset.KindCopy && stamps[u.Timestamp] {
			// The buffer is the hung read's, not replication's.
			s.side.Release(sidefile.Cost(len(u.Data)))
			u.Data = nil
			abandoned = append(abandoned, u)
			continue
		}
		kept = append(kept, u)
	}
	clear(updates[len(kept):])
	return kept, abandoned
}

// Stamp returns a timestamp later than every update captured so far.
func (s *Subsystem) Stamp() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.timer.Now()
}

// Suspend stops capturing writes to vol: from now on they are recorded in bm.
// Updates already captured still ship.
func (s *Subsystem) Suspend(vol string, bm *bitmap.Bitmap) {
	s.mu.Lock()
	s.setTracking(vol, bm)
	s.mu.Unlock()
}

// Resume captures writes to vol again and returns the bitmap of what changed
// while it was suspended (nil if it was not).
func (s *Subsystem) Resume(vol string) *bitmap.Bitmap {
	s.mu.Lock()
	defer s.mu.Unlock()
	bm := s.tracking[vol]
	s.setTracking(vol, nil)
	return bm
}

// Tracking returns vol's change bitmap while it is suspended.
func (s *Subsystem) Tracking(vol string) *bitmap.Bitmap {
	s.trackingMu.Lock()
	defer s.trackingMu.Unlock()
	return s.tracking[vol]
}

// setTracking makes bm vol's change bitmap (nil: none, the volume is
// captured). Called with s.mu held.
func (s *Subsystem) setTracking(vol string, bm *bitmap.Bitmap) {
	s.trackingMu.Lock()
	defer s.trackingMu.Unlock()
	if bm == nil {
		delete(s.tracking, vol)
		return
	}
	s.tracking[vol] = bm
}

// Copy captures the current content of [off, off+length) of vol as a copy
// update, for an initial copy or a resync. The update is stamped like a write
// and holds the region's content as of its timestamp: earlier overlapping
// writes reach the volume before it is read, later ones wait until it has been
// read (or given up, see DrainWithin). A range that is a hole on the primary
// is sent as zeroes, without data, when no write to the volume intervenes
// while it is checked.
func (s *Subsystem) Copy(ctx context.Context, vol string, off, length int64) error {
	return s.CopyReporting(ctx, vol, off, length, nil)
}

// CopyReporting is Copy calling captured (if not nil) once the copy is
// captured, before it reads the volume: a caller that bounds the wait for
// the read times it from then, as the data mover does (Taken.Newest), not
// from before the sidefile room and the activity-log mark the capture
// waits for. A hole, captured without a read, does not call it.
func (s *Subsystem) CopyReporting(ctx context.Context, vol string, off, length int64, captured func()) error {
	v, ok := s.volumes[vol]
	if !ok {
		return fmt.Errorf("subsystem %s: no volume %q", s.id, vol)
	}
	if off < 0 || length <= 0 || length > v.Size() || off > v.Size()-length {
		return fmt.Errorf("subsystem %s: copy %s [%d, +%d): %w", s.id, vol, off, length, volume.ErrOutOfRange)
	}
	if done, err := s.copyHole(ctx, v, vol, off, length); done || err != nil {
		return err
	}
	buf := make([]byte, length)
	if _, err := s.side.Reserve(ctx, sidefile.Cost(len(buf))); err != nil {
		return fmt.Errorf("subsystem %s: %w", s.id, err)
	}
	if err := s.mark(vol, off, length, markCopy); err != nil {
		s.side.Release(sidefile.Cost(len(buf)))
		return err
	}
	var before []chan struct{}
	s.mu.Lock()
	if s.tracking[vol] != nil {
		s.mu.Unlock()
		s.side.Release(sidefile.Cost(len(buf)))
		s.unmark(vol, off, length)
		return fmt.Errorf("subsystem %s: copy %s: %w", s.id, vol, ErrSuspended)
	}
	u := recordset.Update{Volume: vol, Kind: recordset.KindCopy, Offset: uint64(off), Length: uint64(length), Timestamp: s.timer.Now(), Data: buf}
	// The sidefile holds the update with buf, which is filled below; Drain
	// waits on me.done before the mover can encode it.
	s.side.Append(u)
	before = s.overlapping(vol, off, off+length, before)
	me := s.start(vol, off, off+length)
	me.done, me.stamp, me.captured = make(chan struct{}), u.Timestamp, time.Now()
	s.filling[me.done] = me
	hook := s.beforeCopyRead
	s.mu.Unlock()
	if captured != nil {
		captured()
	}
	for _, ch := range before {
		<-ch
	}
	if hook != nil {
		hook(vol, off, length)
	}
	// Not through the page cache: a copy's reads would leave large folios
	// there that make every later small write of the users slow.
	err := v.ReadThrough(buf, off)
	if s.finish(me) {
		return fmt.Errorf("subsystem %s: copy %s [%d, +%d): %w", s.id, vol, off, length, ErrCopyAbandoned)
	}
	if err != nil {
		// The buffer ships as zeroes; the region is wrong at the secondary
		// until it is copied again, which the caller must do.
		return fmt.Errorf("subsystem %s: copy %s [%d, +%d): %w: %w", s.id, vol, off, length, ErrCopyRead, err)
	}
	return nil
}

// EndUpdates refuses every later update of vol (ErrUpdatesEnded), and
// returns a channel closed once every update of vol under way (a write,
// zeroes or a trim; not a copy's read) has reached the volume or failed:
// the volume is no longer written then. A stop closes the volume then,
// and lets its LOCK go once the close has ended, perhaps long after, a
// write given up and held up by its disk: the write, in the kernel,
// lands whenever the disk answers, and a next site let in meanwhile would
// find its volume changed under it. An update still held before its
// capture (its region's mark waiting for the disk, the sidefile full)
// would go on unseen, its pwrite under way as the close, which does not
// wait for it, returns: it is refused instead, never acknowledged.
func (s *Subsystem) EndUpdates(vol string) <-chan struct{} {
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		var under []chan struct{}
		s.mu.Lock()
		if s.ended == nil {
			s.ended = map[string]bool{}
		}
		s.ended[vol] = true
		for _, f := range s.inflight {
			if f.volume == vol && f.captured.IsZero() {
				if f.done == nil {
					f.done = make(chan struct{})
				}
				under = append(under, f.done)
			}
		}
		s.mu.Unlock()
		for _, ch := range under {
			<-ch
		}
	}()
	return ended
}

// SetBeforeVolumeWrite has fn run before each captured update (a write,
// zeroes, a trim) reaches the volume: tests stand a hung primary volume
// in with it.
func (s *Subsystem) SetBeforeVolumeWrite(fn func(vol string)) {
	s.mu.Lock()
	s.beforeVolumeWrite = fn
	s.mu.Unlock()
}

// SetBeforeCopyRead has fn run before each copy reads its data from the
// volume, its update already in the sidefile: tests stand a slow or hung
// primary volume in with it.
func (s *Subsystem) SetBeforeCopyRead(fn func(vol string, off, length int64)) {
	s.mu.Lock()
	s.beforeCopyRead = fn
	s.mu.Unlock()
}

// CopyHole captures [off, off+length) of vol as zeroes if it is a hole on the
// primary, reporting whether it did; a copier tries it on long runs first so
// that the sparse parts of a volume cost one small update.
func (s *Subsystem) CopyHole(ctx context.Context, vol string, off, length int64) (bool, error) {
	v, ok := s.volumes[vol]
	if !ok {
		return false, fmt.Errorf("subsystem %s: no volume %q", s.id, vol)
	}
	if off < 0 || length <= 0 || length > v.Size() || off > v.Size()-length {
		return false, fmt.Errorf("subsystem %s: copy %s [%d, +%d): %w", s.id, vol, off, length, volume.ErrOutOfRange)
	}
	return s.copyHole(ctx, v, vol, off, length)
}

// copyHole sends [off, off+length) as zeroes if it is a hole on the primary and
// no write to the volume was stamped or in flight while that was checked.
func (s *Subsystem) copyHole(ctx context.Context, v *volume.Volume, vol string, off, length int64) (bool, error) {
	s.mu.Lock()
	g0 := s.gen[vol]
	busy := false
	for _, f := range s.inflight {
		if f.volume == vol && f.start < off+length && off < f.end {
			busy = true
		}
	}
	s.mu.Unlock()
	if busy {
		return false, nil
	}
	hole, err := v.IsHole(off, length)
	if err != nil || !hole {
		return false, nil
	}
	if _, err := s.side.Reserve(ctx, sidefile.Cost(0)); err != nil {
		return false, fmt.Errorf("subsystem %s: %w", s.id, err)
	}
	if err := s.mark(vol, off, length, markCopy); err != nil {
		s.side.Release(sidefile.Cost(0))
		return false, err
	}
	s.mu.Lock()
	if s.tracking[vol] != nil || s.gen[vol] != g0 {
		suspended := s.tracking[vol] != nil
		s.mu.Unlock()
		s.side.Release(sidefile.Cost(0))
		s.unmark(vol, off, length)
		if suspended {
			return false, fmt.Errorf("subsystem %s: copy %s: %w", s.id, vol, ErrSuspended)
		}
		// A write came in: the range is copied with its data instead.
		return false, nil
	}
	defer s.mu.Unlock()
	s.side.Append(recordset.Update{Volume: vol, Kind: recordset.KindZeroes, Offset: uint64(off), Length: uint64(length), Timestamp: s.timer.Now()})
	return true, nil
}
