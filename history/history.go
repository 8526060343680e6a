package history

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"duplex/disk"
	"duplex/journal"
)

// Source is a volume whose current content a capture reads.
type Source interface {
	ReadAt(p []byte, off int64) error
}

// holer is a Source that can tell a range that was never written: its
// before image is zeros without reading it (a trim of a large empty range).
type holer interface {
	IsHole(off, length int64) (bool, error)
}

// Sink is a volume that Undo writes before images to.
type Sink interface {
	WriteAt(p []byte, off int64) error
	WriteZeroes(off, length int64) error
	Flush() error
}

// Range is a range of a volume that a group overwrites.
type Range struct {
	Volume         string
	Offset, Length uint64
}

// Header says which group a capture is for.
type Header struct {
	Group    uint64
	Time     int64
	MidBatch bool
	State    []byte
}

// Point is a state the volumes were at, that Undo can take them back to:
// group Group's updates stamped at or before Time applied, and every
// group before it. Time is the group's consistency time, or for a step of
// the group (Step) the time of the step's last update.
type Point struct {
	Group uint64
	Time  int64
	// State is what the caller kept with the group (Header.State).
	State []byte
}

// Whole is the point of group g applied whole, whatever its time.
func Whole(g uint64) Point { return Point{Group: g, Time: math.MaxInt64} }

// after reports whether the record of entry e undoes something the volumes
// at p hold: it belongs to a later group, or to a later step of p's group.
func (p Point) after(e entry) bool {
	return e.group > p.Group || e.group == p.Group && e.time > p.Time
}

// Step is a part of a group's updates, in timestamp order. With the steps
// before it and it applied, the volumes hold every update of the group
// stamped at or before Time and none after: each subsystem's horizon
// passed the group's time, so that is the state the primary had at Time,
// a point of its own.
type Step struct {
	Time int64
	// Ranges are what the step overwrites.
	Ranges []Range
	// Writes are what it writes there, in timestamp order: the content
	// that the before images of the later steps of the group read. Data
	// is not copied (Capture returns before the group is applied). The
	// last step needs none.
	Writes []Extent
}

// Options tunes a Log.
type Options struct {
	// Window is how long a group's undo is kept: Trim drops the undo of
	// groups whose time is older than now minus Window.
	Window time.Duration
	// MaxBytes bounds the log's files: Trim drops the oldest groups while
	// the files hold more. The log may exceed it by up to two segments of
	// MaxBytes/16 (the active one is never dropped).
	MaxBytes int64
	// FS is the file system the log lives on (default disk.OS).
	FS disk.FS
	// Now is the clock Trim compares group times with (default time.Now).
	Now func() time.Time
}

// PartBytes is how much before-image data one record holds at most: a
// group that overwrites more is captured in several records, so that no
// record, and no buffer, grows with the group.
const PartBytes = 16 << 20

// readChunk is how much of a range a capture reads at once: a chunk that
// reads as zeros is kept as a zeros extent.
const readChunk = 1 << 20

// maxRecord bounds a record: a part of PartBytes, plus extent headers and
// the state.
const maxRecord = PartBytes + 16<<20

// entry is a record the Log holds, as its index knows it.
type entry struct {
	index    uint64 // in the journal
	group    uint64
	time     int64
	part     uint32
	last     bool
	step     bool // the last part of a step that is not the group's last: a point
	midBatch bool
	gap      bool // a gap record: the group's undo was not kept
	state    []byte
	size     int64 // on disk, framing included
}

// Log is the history of a secondary: an open history directory.
type Log struct {
	dir  string
	opts Options
	jo   journal.Options

	// j is replaced by Gap; mu guards the field, not the journal's calls.
	j *journal.Journal

	mu sync.Mutex
	// gapping says a Gap removes the files and writes its record without
	// mu (a removal's and the record's fsync may take seconds, and the
	// secondary's status reads the window under a lock its receiver
	// takes too): entries already holds nothing, and j is the old
	// journal, closed, until gapped is signalled. An append or Close
	// waits for it.
	gapping bool
	gapped  *sync.Cond
	// replacing is the journal a Gap under way begins, once it is open
	// (nil before): its size is the history's, the old one's undo given
	// up.
	replacing *journal.Journal
	// resets counts the Gaps and Resets begun: a reader that let go of
	// mu tells by it that every record it chose was dropped meanwhile.
	resets  uint64
	entries []entry // the records that describe the volumes, oldest first
	next    uint64  // journal index of the next record
	buf     []byte
	// lost is the newest entry dropped from the old end while the Log was
	// open (Trim, Gap): a read of the undo after a point it is after,
	// wanted since before it went (a read view pins first, reads later),
	// lacks part of it.
	lost entry
	// holds are the points whose undo a caller reads (Hold): Trim drops
	// no record of what is after one of them.
	holds map[*Point]struct{}
	// trimMu is held by Trim from its choice of records to their release,
	// by Hold: a hold taken while a Trim releases segments waits for it,
	// and then sees what went (lost); and by Gap and Reset, which open the
	// journal again numbered from 1: a Trim that released the old one's
	// segments would forget the new one's records by their index.
	trimMu sync.Mutex
	// stopped is the Trim a hold stopped short, nil if none: the files
	// stay over the window or MaxBytes, and the caller trims only at its
	// checkpoints, which an idle or fenced secondary makes none of for
	// hours. The last hold let go trims again (retrim).
	stopped *stoppedTrim
	// retrims are the Trims the last hold's release started, and their
	// retries (retryTimer); closed says Close began, after which none is
	// started, nor a Gap or Reset.
	retrims    sync.WaitGroup
	closed     bool
	retryTimer *time.Timer
	// testReplaying, if set, is called as replayAfter reads the first
	// record it wants (tests).
	testReplaying func()
}

// stoppedTrim is a Trim that holds stopped short.
type stoppedTrim struct {
	keep     uint64    // the Trim's keep, lowered by a Void
	since    time.Time // the first Trim stopped
	err      error     // the last failure of a Trim run since, if it failed
	attempts int       // the retrims that failed in a row
}

// Backoff of a failed retrim's retries: from a second, doubled, up to a
// minute, as the secondary retries a failed release of its journal.
const (
	retrimRetryFirst = time.Second
	retrimRetryMax   = time.Minute
)

// TrimStopped is what Log.Stopped says of a Trim that holds stopped short.
type TrimStopped struct {
	// Since is when the first Trim was stopped.
	Since time.Time
	// Holds is how many holds stop it now: 0 once the last was let go,
	// the Trim then run again (or failed: Err).
	Holds int
	// Err is why the last Trim since failed (the one run again once the
	// last hold went, or a checkpoint's): the files stay over their bound
	// until one succeeds, tried again after a backoff.
	Err error
}

// Open opens (creating if needed) the history in dir and reads its index.
// A group whose last part never reached the disk was never applied (its
// capture is synced before the group is), so it is left out, and the next
// capture of that group replaces it.
func Open(dir string, opts Options) (*Log, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	seg := min(int64(64<<20), max(int64(1<<20), opts.MaxBytes/16))
	jo := journal.Options{SegmentSize: seg, MaxRecord: maxRecord, FS: opts.FS}
	j, err := journal.Open(dir, jo)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	l := &Log{dir: dir, opts: opts, jo: jo, j: j, next: j.LastIndex() + 1}
	l.gapped = sync.NewCond(&l.mu)
	err = j.Replay(0, func(index uint64, data []byte) error {
		r, _, err := decodeHeader(data)
		if err != nil {
			return fmt.Errorf("record %d: %w", index, err)
		}
		l.note(index, r, len(data))
		return nil
	})
	if err != nil {
		j.Close()
		return nil, fmt.Errorf("history %s: %w", dir, err)
	}
	l.dropIncompleteTail()
	return l, nil
}

// note adds what record r at index says to the index. Called with l.mu
// held, or before l is shared.
func (l *Log) note(index uint64, r *Record, n int) {
	switch {
	case r.Kind == KindVoid && r.Step:
		l.dropAfterPoint(Point{Group: r.Group, Time: r.Time})
		return
	case r.Kind == KindVoid:
		l.dropAfter(r.Group)
		return
	case r.Kind == KindGap:
		l.entries = l.entries[:0]
	case r.Part == 0:
		// A capture of the group begins again: whatever an earlier one,
		// interrupted, left is replaced.
		l.dropAfter(r.Group - 1)
	case len(l.entries) > 0:
		prev := l.entries[len(l.entries)-1]
		if prev.group != r.Group || prev.part+1 != r.Part || prev.last {
			return // a part of a capture that was replaced
		}
	}
	e := entry{index: index, group: r.Group, time: r.Time, part: r.Part, last: r.Last, step: r.Step, midBatch: r.MidBatch,
		gap: r.Kind == KindGap, size: int64(16 + (n+7)&^7)}
	if r.Last && len(r.State) > 0 {
		e.state = bytes.Clone(r.State)
	}
	l.entries = append(l.entries, e)
}

func (l *Log) dropAfter(group uint64) {
	i := len(l.entries)
	for i > 0 && l.entries[i-1].group > group {
		i--
	}
	l.entries = l.entries[:i]
}

// dropAfterPoint drops the entries that undo what the volumes at p do not
// hold. The volumes hold p's group through p: its undo that far is whole,
// and the step ending at p is its last.
func (l *Log) dropAfterPoint(p Point) {
	i := len(l.entries)
	for i > 0 && p.after(l.entries[i-1]) {
		i--
	}
	l.entries = l.entries[:i]
	if i == 0 {
		return
	}
	if e := &l.entries[i-1]; e.group == p.Group && e.step {
		e.last, e.step = true, false
	}
}

func (l *Log) dropIncompleteTail() {
	if n := len(l.entries); n > 0 && !l.entries[n-1].last {
		l.dropAfter(l.entries[n-1].group - 1)
	}
}

// Has reports whether the Log holds the whole undo of group: a restart that
// applies the group again must not capture it again, since the volumes may
// already hold part of it.
func (l *Log) Has(group uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.entries) - 1; i >= 0 && l.entries[i].group >= group; i-- {
		if l.entries[i].group == group && l.entries[i].last {
			return true
		}
	}
	return false
}

// ErrGroupTooLarge is returned by Capture for a group whose before images
// alone exceed Options.MaxBytes: keeping them would empty the window of
// every other group and still break the bound. The caller records a Gap
// instead.
var ErrGroupTooLarge = errors.New("the group's before images exceed the history's bound")

// Capture reads the before images of ranges from srcs and appends them as
// the undo of group h.Group, in as many parts as they need, then syncs: only
// when it returns may the group be applied. A group whose before images
// exceed Options.MaxBytes is refused (ErrGroupTooLarge) before more than a part
// of them is read; parts already appended are then left incomplete, which
// Gap, or the group's next capture, replaces.
func (l *Log) Capture(h Header, ranges []Range, srcs map[string]Source) error {
	return l.CaptureSteps(h, []Step{{Time: h.Time, Ranges: ranges}}, srcs)
}

// CaptureSteps is Capture of a group in steps, each a point: the before
// images of a step are the volumes' content with the steps before it
// applied, read from srcs through the earlier steps' Writes. The last
// step's Time must be the group's.
func (l *Log) CaptureSteps(h Header, steps []Step, srcs map[string]Source) error {
	if len(steps) == 0 || steps[len(steps)-1].Time != h.Time {
		return fmt.Errorf("history: capture group %d: its last step must end at the group's time", h.Group)
	}
	r := &Record{Kind: KindUndo, Group: h.Group, MidBatch: h.MidBatch}
	held := 0
	var total int64
	flush := func(last, step bool) error {
		r.Last, r.Step = last, step
		if last {
			r.State = h.State
		}
		if err := l.append(r); err != nil {
			return err
		}
		r.Part++
		r.Extents, held = r.Extents[:0], 0
		return nil
	}
	written := map[string]*layer{}
	for k, st := range steps {
		r.Time = st.Time
		if err := l.captureStep(h.Group, st, srcs, written, r, &held, &total, func() error { return flush(false, false) }); err != nil {
			return err
		}
		last := k == len(steps)-1
		if err := flush(last, !last); err != nil {
			return err
		}
		if last {
			break
		}
		for _, w := range st.Writes {
			lw := written[w.Volume]
			if lw == nil {
				lw = &layer{}
				written[w.Volume] = lw
			}
			lw.put(w)
		}
	}
	if err := l.journal().Sync(); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

// captureStep adds the before images of st's ranges to r, flushing a part
// whenever it holds PartBytes.
func (l *Log) captureStep(group uint64, st Step, srcs map[string]Source, written map[string]*layer, r *Record, held *int, total *int64, flush func() error) error {
	for _, rg := range mergeRanges(st.Ranges) {
		src, ok := srcs[rg.Volume]
		if !ok {
			return fmt.Errorf("history: capture group %d: no volume %q", group, rg.Volume)
		}
		if lw := written[rg.Volume]; lw != nil {
			src = layered{src: src, l: lw}
		}
		for off, end := rg.Offset, rg.Offset+rg.Length; off < end; {
			n := min(end-off, readChunk)
			e, err := readExtent(src, rg.Volume, off, n)
			if err != nil {
				return fmt.Errorf("history: capture group %d: %w", group, err)
			}
			if k := len(r.Extents); k > 0 && e.Zeros && r.Extents[k-1].Zeros && r.Extents[k-1].Volume == e.Volume &&
				r.Extents[k-1].Offset+r.Extents[k-1].Length == e.Offset {
				r.Extents[k-1].Length += e.Length
			} else {
				r.Extents = append(r.Extents, e)
			}
			*held += len(e.Data)
			*total += int64(len(e.Data))
			if l.opts.MaxBytes > 0 && *total > l.opts.MaxBytes {
				return fmt.Errorf("history: capture group %d: more than %d bytes: %w", group, l.opts.MaxBytes, ErrGroupTooLarge)
			}
			off += n
			if *held >= PartBytes {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func readExtent(src Source, vol string, off, n uint64) (Extent, error) {
	e := Extent{Volume: vol, Offset: off, Length: n}
	if h, ok := src.(holer); ok {
		hole, err := h.IsHole(int64(off), int64(n))
		if err != nil {
			return e, fmt.Errorf("volume %s: %w", vol, err)
		}
		if hole {
			e.Zeros = true
			return e, nil
		}
	}
	data := make([]byte, n)
	if err := src.ReadAt(data, int64(off)); err != nil {
		return e, fmt.Errorf("volume %s: read %d bytes at %d: %w", vol, n, off, err)
	}
	if allZero(data) {
		e.Zeros = true
		return e, nil
	}
	e.Data = data
	return e, nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// mergeRanges sorts ranges and merges those that overlap or touch, so that
// no byte's before image is read or kept twice.
func mergeRanges(ranges []Range) []Range {
	rs := slices.Clone(ranges)
	rs = slices.DeleteFunc(rs, func(r Range) bool { return r.Length == 0 })
	slices.SortFunc(rs, func(a, b Range) int {
		if a.Volume != b.Volume {
			if a.Volume < b.Volume {
				return -1
			}
			return 1
		}
		switch {
		case a.Offset < b.Offset:
			return -1
		case a.Offset > b.Offset:
			return 1
		}
		return 0
	})
	out := rs[:0]
	for _, r := range rs {
		if k := len(out); k > 0 && out[k-1].Volume == r.Volume && r.Offset <= out[k-1].Offset+out[k-1].Length {
			out[k-1].Length = max(out[k-1].Offset+out[k-1].Length, r.Offset+r.Length) - out[k-1].Offset
			continue
		}
		out = append(out, r)
	}
	return out
}

// append writes r as the next record and adds it to the index.
func (l *Log) append(r *Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.awaitGapLocked()
	b, err := r.Encode(l.buf[:0])
	if err != nil {
		return err
	}
	l.buf = b
	if err := l.j.Append(l.next, b); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	l.note(l.next, r, len(b))
	l.next++
	return nil
}

// Void records, durably, that the volumes were taken back to p: the undo
// of every later group, and of the steps of p's group after p, no longer
// describes them.
func (l *Log) Void(p Point) error {
	if err := l.append(&Record{Kind: KindVoid, Group: p.Group, Time: p.Time, Step: true}); err != nil {
		return err
	}
	l.mu.Lock()
	if l.stopped != nil {
		// The groups after p are the volumes' no more: those numbered
		// so next are captured before they are applied, and a retrim
		// by the keep of before must not take their undo.
		l.stopped.keep = min(l.stopped.keep, p.Group)
	}
	l.mu.Unlock()
	if err := l.journal().Sync(); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

// Gap records, durably, that group h.Group is about to be applied with no
// undo kept, and drops the undo of every earlier group, files included:
// without h.Group's before images the volumes can never be taken back
// past it. The caller applies the group only once Gap returns. It is what
// a capture that would exceed the bound (ErrGroupTooLarge) or that the disk has
// no room for falls back to, so the history gives up its window rather
// than stop the secondary; the Log need not be usable when it is called
// (a failed write leaves its journal refusing more).
//
// A crash part-way leaves either some of the newest files and no gap
// record (the group was not applied: captured again at restart, the
// earlier groups' undo as far as it was kept), or the gap record alone.
func (l *Log) Gap(h Header) error {
	l.trimMu.Lock()
	defer l.trimMu.Unlock()
	// The earlier undo is dropped for readers at once, and the files go
	// without mu: Trim, Reset and Hold wait for trimMu, an append and
	// Close for gapped, and what only reads the index (the secondary's
	// status among them) does not wait on the disk.
	l.mu.Lock()
	if l.closed {
		// Close let the journal go, its lock with it: the files are no
		// longer this Log's to remove (one waiting for a Trim's release
		// while Close ran would otherwise leave a journal open on them).
		l.mu.Unlock()
		return fmt.Errorf("history: gap at group %d: %w", h.Group, ErrClosed)
	}
	if n := len(l.entries); n > 0 {
		l.lost = l.entries[n-1]
	}
	old := l.j
	l.entries, l.stopped = l.entries[:0], nil
	l.resets++
	l.gapping = true
	l.mu.Unlock()

	r := &Record{Kind: KindGap, Group: h.Group, Time: h.Time, Last: true, MidBatch: h.MidBatch, State: h.State}
	j, err := l.resetFiles(old)
	var (
		index uint64
		b     []byte
	)
	if j != nil {
		l.mu.Lock()
		l.replacing = j
		l.mu.Unlock()
	}
	if err == nil {
		index = j.LastIndex() + 1
		if b, err = r.Encode(nil); err == nil {
			if err = j.Append(index, b); err == nil {
				err = j.Sync()
			}
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	l.gapping, l.replacing = false, nil
	l.gapped.Broadcast()
	if j != nil {
		l.j, l.next = j, j.LastIndex()+1
	}
	if err != nil {
		return fmt.Errorf("history: gap at group %d: %w", h.Group, err)
	}
	l.note(index, r, len(b))
	l.next = index + 1
	return nil
}

// awaitGapLocked waits until no Gap is under way. Called with l.mu held,
// which it lets go of while it waits.
func (l *Log) awaitGapLocked() {
	for l.gapping {
		l.gapped.Wait()
	}
}

// Reset drops every record, files included: the history belongs to
// volumes that are gone (a secondary created again beside it).
func (l *Log) Reset() error {
	l.trimMu.Lock()
	defer l.trimMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("history: reset: %w", ErrClosed)
	}
	if err := l.reset(); err != nil {
		return fmt.Errorf("history: reset: %w", err)
	}
	// Nothing wanted of the other volumes' history: the new ones reuse its
	// group numbers.
	l.lost = entry{}
	return nil
}

// reset removes the journal's files and opens it again, empty. Called with
// l.mu held.
func (l *Log) reset() error {
	l.resets++
	j, err := l.resetFiles(l.j)
	if j != nil {
		l.j, l.next = j, j.LastIndex()+1
	}
	if err != nil {
		return err
	}
	l.entries = l.entries[:0]
	l.stopped = nil
	return nil
}

// resetFiles closes old, removes the journal's files and opens it again,
// empty; the new journal is nil unless it opened. It touches nothing of
// l but what Open set.
func (l *Log) resetFiles(old *journal.Journal) (*journal.Journal, error) {
	old.Close() // a journal that failed a write may say so again: its files go anyway
	fsys := l.jo.FS
	if fsys == nil {
		fsys = disk.OS
	}
	des, err := fsys.ReadDir(l.dir)
	if err != nil {
		return nil, err
	}
	// Oldest first (the names are the zero-padded first index), each
	// removal made durable before the next, so that a crash part-way leaves
	// the newest records, as Trim would. Removals no fsync of the directory
	// has covered may reach the disk in any order: a crash could leave an
	// older segment without the one after it, a hole that Open refuses
	// (or, read past, the undo of some groups and not of those between).
	for _, de := range des {
		if de.IsDir() || de.Name() == "LOCK" {
			continue
		}
		if err := fsys.Remove(filepath.Join(l.dir, de.Name())); err != nil {
			return nil, err
		}
		if err := fsys.SyncDir(l.dir); err != nil {
			return nil, err
		}
	}
	return journal.Open(l.dir, l.jo)
}

// Reaches reports whether the Log holds the undo of a group at or before
// group (a gap's aside): points that a group applied after them without
// history would make wrong.
func (l *Log) Reaches(group uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.entries {
		if e.group <= group && !e.gap {
			return true
		}
	}
	return false
}

func (l *Log) journal() *journal.Journal {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.j
}

// point says whether the volumes were at e's group through e's time.
func (e entry) point() bool { return (e.last || e.step) && !e.midBatch }

// Beyond reports whether the Log holds undo of what the volumes at p do
// not hold (a recovery recorded p and was stopped before Void, or the
// volumes hold part of the next group): Undo(p) then writes it back.
func (l *Log) Beyond(p Point) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries) > 0 && p.after(l.entries[len(l.entries)-1])
}

// Newest is the group and time of the newest record the Log holds (a
// point or not: the undo of a group the volumes hold part of), ok false
// when it holds none. Overlays through it reads every record held now.
func (l *Log) Newest() (p Point, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.entries) == 0 {
		return p, false
	}
	e := l.entries[len(l.entries)-1]
	return Point{Group: e.group, Time: e.time}, true
}

// Last is the newest group whose undo the Log holds, 0 if none.
func (l *Log) Last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.entries) == 0 {
		return 0
	}
	return l.entries[len(l.entries)-1].group
}

// Points are the states Undo can take the volumes back to, oldest first:
// each group whose undo is held whole, but those applied in a batch with
// later ones.
func (l *Log) Points() []Point {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ps []Point
	for _, e := range l.entries {
		if e.point() {
			ps = append(ps, Point{Group: e.group, Time: e.time, State: e.state})
		}
	}
	return ps
}

// Oldest is the oldest point, ok false when the Log holds none.
func (l *Log) Oldest() (p Point, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.entries {
		if e.point() {
			return Point{Group: e.group, Time: e.time, State: e.state}, true
		}
	}
	return p, false
}

// At is the newest point at or before t, ok false if every point is later.
func (l *Log) At(t int64) (p Point, ok bool) {
	for _, q := range l.Points() {
		if q.Time > t {
			break
		}
		p, ok = q, true
	}
	return p, ok
}

// Bytes is the size of the Log's files; during a Gap, of the new
// journal's, which alone holds the history.
func (l *Log) Bytes() int64 {
	l.mu.Lock()
	j, gapping := l.j, l.gapping
	if gapping {
		// j is the old journal, its files going: the history is the
		// new one's, none until it is open.
		j = l.replacing
	}
	l.mu.Unlock()
	if j == nil {
		return 0
	}
	return j.Bytes()
}

// Trim drops the undo of the oldest groups: those older than the window,
// and more while the files exceed MaxBytes, never a group after keep (a
// restart may apply it again and must find its undo). Space goes back a
// segment file at a time.
func (l *Log) Trim(keep uint64) error { return l.trim(keep, false) }

// trim is Trim; again says it is the Trim holds stopped short, run again
// as the last was let go: its keep is read here, under the lock, as it
// stands now (a Void since lowers it), and with no Trim stopped short
// any more (one ran whole since, or a Gap or Reset forgot it) it does
// nothing.
func (l *Log) trim(keep uint64, again bool) error {
	l.trimMu.Lock()
	defer l.trimMu.Unlock()
	cutoff := l.opts.Now().Add(-l.opts.Window).UnixNano()
	l.mu.Lock()
	var since time.Time
	if again {
		if l.stopped == nil {
			l.mu.Unlock()
			return nil
		}
		keep, since = l.stopped.keep, l.stopped.since
	}
	excess := l.j.Bytes() - l.opts.MaxBytes
	// The newest point at or before the cutoff stays: it is the state as
	// of the window's start.
	var edge uint64
	if l.opts.Window > 0 {
		for _, e := range l.entries {
			if e.time > cutoff {
				break
			}
			if e.point() {
				edge = e.group
			}
		}
	}
	var (
		i     int
		freed int64
		held  bool
	)
	for i < len(l.entries) {
		e := l.entries[i]
		if e.group > keep || !(e.group < edge || l.opts.MaxBytes > 0 && freed < excess) {
			break
		}
		if l.heldLocked(e) {
			held = true
			break
		}
		freed += e.size
		i++
	}
	// A Trim stopped short before is forgotten only once this one has
	// released what it stopped at: until then the files are still over
	// their bound, and Stopped says so (a failure keeps it, with why).
	whole := !held
	switch {
	case !held:
	case l.stopped == nil:
		l.stopped = &stoppedTrim{keep: keep, since: l.opts.Now()}
	default:
		l.stopped.keep, l.stopped.err = keep, nil
	}
	// Whole groups only: a group cut in two would leave its later parts,
	// which undo nothing on their own.
	for i > 0 && i < len(l.entries) && l.entries[i].group == l.entries[i-1].group {
		i--
	}
	var through uint64
	if i > 0 {
		through = l.entries[i-1].index
	}
	j := l.j
	if through == 0 {
		if whole {
			l.stopped = nil
		}
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	if err := j.Release(through); err != nil {
		err = fmt.Errorf("history: %w", err)
		l.mu.Lock()
		if again && l.stopped == nil {
			l.stopped = &stoppedTrim{keep: keep, since: since}
		}
		if l.stopped != nil {
			// Kept for Stopped, the files still over their bound, and
			// tried again on its own: the caller's next Trim may be
			// hours away (a fenced or idle secondary makes no
			// checkpoint).
			l.stopped.err = err
			l.stopped.attempts++
			l.retryLaterLocked()
		}
		l.mu.Unlock()
		return err
	}
	first := j.FirstIndex()
	l.mu.Lock()
	if whole {
		l.stopped = nil
	} else if l.stopped != nil {
		// Released, though a hold stopped it short: the next failure is
		// the first of a new row, tried again after the first backoff.
		l.stopped.attempts = 0
	}
	k := 0
	for k < len(l.entries) && l.entries[k].index < first {
		k++
	}
	if k > 0 {
		l.lost = l.entries[k-1]
	}
	l.entries = slices.Delete(l.entries, 0, k)
	l.mu.Unlock()
	return nil
}

// Hold keeps the undo of what is after p, the records Undo(p), Overlays(p,
// ...) and Ranges(p) read, from Trim until release is called: a reader
// that chose p reads all of it, however long the read takes and whatever
// the window and MaxBytes say meanwhile. It fails (ErrOutside) if part of
// it went already. Gap and Reset, which drop every record, still do.
func (l *Log) Hold(p Point) (release func(), err error) {
	l.trimMu.Lock()
	defer l.trimMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if p.after(l.lost) {
		return nil, fmt.Errorf("history: back to group %d: the undo of group %d was dropped: %w", p.Group, l.lost.group, ErrOutside)
	}
	if l.holds == nil {
		l.holds = map[*Point]struct{}{}
	}
	h := &p
	l.holds[h] = struct{}{}
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			delete(l.holds, h)
			switch {
			case len(l.holds) > 0 || l.stopped == nil || l.closed:
			case l.stopped.err != nil:
				// Failing: tried again on its backoff, not at each
				// let-go (views open and close often).
				l.retryLaterLocked()
			default:
				// Not here: the caller may let go under its own locks, and
				// a Trim removes files and syncs the directory.
				l.retrims.Add(1)
				go l.retrim()
			}
		})
	}, nil
}

// retrim runs the Trim holds stopped short once the last is let go. A
// failure is kept for Stopped and tried again after a backoff (trim).
func (l *Log) retrim() {
	defer l.retrims.Done()
	_ = l.trim(0, true)
}

// retryLaterLocked schedules the stopped Trim to run again after a
// backoff, unless one is scheduled, a hold stops it (its let-go runs it),
// or the Log closes. Called with l.mu held.
func (l *Log) retryLaterLocked() {
	st := l.stopped
	if st == nil || l.closed || l.retryTimer != nil || len(l.holds) > 0 {
		return
	}
	// By the failures, not the schedules: a timer that fired while a hold
	// stopped it ran no Trim, and the let-go schedules it again.
	d := min(retrimRetryFirst<<min(max(st.attempts-1, 0), 16), retrimRetryMax)
	l.retryTimer = time.AfterFunc(d, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.retryTimer = nil
		if l.closed || l.stopped == nil || len(l.holds) > 0 {
			return
		}
		l.retrims.Add(1)
		go l.retrim()
	})
}

// Stopped says whether a Trim was stopped short by holds (Hold), the
// files left over the window or MaxBytes until they are let go: ok is
// false once a Trim has run whole since.
func (l *Log) Stopped() (st TrimStopped, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped == nil {
		return st, false
	}
	return TrimStopped{Since: l.stopped.since, Holds: len(l.holds), Err: l.stopped.err}, true
}

// heldLocked reports whether a hold needs the record of e. Called with
// l.mu held.
func (l *Log) heldLocked(e entry) bool {
	for h := range l.holds {
		if h.after(e) {
			return true
		}
	}
	return false
}

// Undo writes, for every byte that a group (or step) after to overwrote,
// its content as of to, and flushes the sinks it wrote. The undo records are read
// oldest first and each byte takes the first before image met, the one of
// the oldest group after to that wrote it: that is the same as undoing
// the groups newest first, reading the Log in its order. Undo is
// idempotent: run again after a crash, it writes the same bytes.
func (l *Log) Undo(to Point, sinks map[string]Sink) error {
	covered := map[string]*spans{}
	touched := map[string]Sink{}
	err := l.replayAfter(to, Whole(math.MaxUint64), func(r *Record) error {
		for _, e := range r.Extents {
			sink, ok := sinks[e.Volume]
			if !ok {
				return fmt.Errorf("history: group %d: no volume %q", r.Group, e.Volume)
			}
			touched[e.Volume] = sink
			c := covered[e.Volume]
			if c == nil {
				c = &spans{}
				covered[e.Volume] = c
			}
			for _, g := range c.add(e.Offset, e.Offset+e.Length) {
				var err error
				if e.Zeros {
					err = sink.WriteZeroes(int64(g.start), int64(g.end-g.start))
				} else {
					err = sink.WriteAt(e.Data[g.start-e.Offset:g.end-e.Offset], int64(g.start))
				}
				if err != nil {
					return fmt.Errorf("history: undo group %d on %s at %d: %w", r.Group, e.Volume, g.start, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for name, s := range touched {
		if err := s.Flush(); err != nil {
			return fmt.Errorf("history: flush %s: %w", name, err)
		}
	}
	return nil
}

// ErrTooLarge is wrapped by Overlays' error when the undo after the group
// holds more than the bytes it was allowed.
var ErrTooLarge = errors.New("the undo is larger than allowed")

// Overlays reads the undo of every group (or step) after to and through
// through into an Overlay per volume, in memory, or with spill set into
// spilled Overlays whose images go to spill: laid over the volumes'
// content as of through, they read the volumes as of to, as Undo would
// leave them, without writing to them. The Overlays hold at most maxBytes
// of memory (ErrTooLarge); count, if set, is told of the memory they take
// as they take it, and its error stops the read: a caller bounding the
// memory of many readers counts it before the read is over. A group
// after to trimmed meanwhile fails it (ErrOutside), never leaves a byte
// of the past unread.
func (l *Log) Overlays(to, through Point, maxBytes int64, spill *Scratch, count func(n int64) error) (map[string]*Overlay, error) {
	out := map[string]*Overlay{}
	var held int64
	err := l.replayAfter(to, through, func(r *Record) error {
		for _, e := range r.Extents {
			o := out[e.Volume]
			if o == nil {
				o = &Overlay{spill: spill}
				out[e.Volume] = o
			}
			before := o.Bytes()
			// e.Data is a slice of the record: copied if kept.
			if err := o.add(e, false); err != nil {
				return fmt.Errorf("history: the data changed since group %d: %w", to.Group, err)
			}
			n := o.Bytes() - before
			if held += n; held > maxBytes {
				return fmt.Errorf("history: the data changed since group %d is more than %d MiB: %w", to.Group, maxBytes>>20, ErrTooLarge)
			}
			if count != nil {
				if err := count(n); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Ranges are the ranges the groups (and steps) after to overwrote, those
// Undo(to) writes back, oldest group first.
func (l *Log) Ranges(to Point) ([]Range, error) {
	var out []Range
	err := l.replayAfter(to, Whole(math.MaxUint64), func(r *Record) error {
		for _, e := range r.Extents {
			out = append(out, Range{Volume: e.Volume, Offset: e.Offset, Length: e.Length})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// replayAfter calls fn with every record of a group (or step) after to and
// not after through, oldest first, and fails if one of them went (Trim,
// or a Gap that dropped them all) before it was read, or before the call:
// the caller chose to while they were held.
func (l *Log) replayAfter(to, through Point, fn func(r *Record) error) error {
	l.mu.Lock()
	if to.after(l.lost) {
		l.mu.Unlock()
		return fmt.Errorf("history: back to group %d: the undo of group %d was dropped: %w", to.Group, l.lost.group, ErrOutside)
	}
	want := map[uint64]bool{}
	after := uint64(0)
	j, resets := l.j, l.resets
	for _, e := range l.entries {
		if !to.after(e) || through.after(e) {
			continue
		}
		if e.gap {
			l.mu.Unlock()
			return fmt.Errorf("history: back to group %d: group %d was applied with no undo kept: %w", to.Group, e.group, ErrOutside)
		}
		if len(want) == 0 {
			after = e.index - 1
		}
		want[e.index] = true
	}
	l.mu.Unlock()
	if len(want) == 0 {
		return nil
	}
	seen := 0
	err := j.Replay(after, func(index uint64, data []byte) error {
		if !want[index] {
			return nil
		}
		if seen == 0 && l.testReplaying != nil {
			l.testReplaying()
		}
		seen++
		r, err := Decode(data)
		if err != nil {
			return fmt.Errorf("history record %d: %w", index, err)
		}
		if err := fn(r); err != nil {
			return err
		}
		if seen == len(want) {
			// What was appended since (groups applied meanwhile) is not
			// read.
			return errRead
		}
		return nil
	})
	l.mu.Lock()
	reset := l.resets != resets
	l.mu.Unlock()
	if reset {
		// A Gap (or Reset) dropped every record while they were read (a
		// read view's, which takes no lock against applying): what was
		// read may be of the journal written since, under the same names.
		return fmt.Errorf("history: back to group %d: the undo was dropped while read: %w", to.Group, ErrOutside)
	}
	if err != nil && !errors.Is(err, errRead) {
		if j.FirstIndex() > after+1 {
			// Trimmed while read: a segment went before it was opened.
			return fmt.Errorf("history: back to group %d: the undo was trimmed while read (%v): %w", to.Group, err, ErrOutside)
		}
		return err
	}
	if seen != len(want) {
		return fmt.Errorf("history: %d of the %d records after group %d were trimmed while read: %w", len(want)-seen, len(want), to.Group, ErrOutside)
	}
	return nil
}

var errRead = errors.New("every record wanted read")

// Close closes the Log.
func (l *Log) Close() error {
	l.mu.Lock()
	l.awaitGapLocked()
	l.closed = true
	if l.retryTimer != nil {
		l.retryTimer.Stop()
		l.retryTimer = nil
	}
	l.mu.Unlock()
	l.retrims.Wait()
	if err := l.journal().Close(); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

// ErrClosed is wrapped by the errors of a Gap or Reset after Close, which
// would otherwise remove the files of a Log let go.
var ErrClosed = errors.New("history closed")

// ErrOutside is wrapped by the errors of a point asked for outside the
// window.
var ErrOutside = errors.New("outside the history window")

type span struct{ start, end uint64 }

// spans is a set of disjoint byte ranges, sorted.
type spans struct{ s []span }

// add adds [start, end) and returns the parts of it that were not yet in
// the set.
func (c *spans) add(start, end uint64) []span {
	if start >= end {
		return nil
	}
	i := sort.Search(len(c.s), func(i int) bool { return c.s[i].end >= start })
	var gaps []span
	cur := start
	j := i
	for ; j < len(c.s) && c.s[j].start <= end; j++ {
		if c.s[j].start > cur {
			gaps = append(gaps, span{cur, c.s[j].start})
		}
		cur = max(cur, c.s[j].end)
	}
	if cur < end {
		gaps = append(gaps, span{cur, end})
	}
	merged := span{start, end}
	if i < j {
		merged.start = min(merged.start, c.s[i].start)
		merged.end = max(merged.end, c.s[j-1].end)
	}
	c.s = slices.Replace(c.s, i, j, merged)
	return gaps
}
