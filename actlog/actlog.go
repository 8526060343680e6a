// Package actlog is the primary's activity log: the on-disk record of the
// regions that may hold acknowledged updates the secondary has not journaled.
//
// The method keeps updates in the sidefile, in memory, until the secondary has
// them; a primary that crashes loses that memory, while its volumes keep the
// writes it acknowledged. So before an update is captured, its region is
// marked here, and the mark reaches the disk before the write reaches the
// volume (once per region: a region that is already marked costs nothing).
// Marks are cleared, lazily, once every update in the region is acknowledged
// by the secondary. After a crash, the marked regions are exactly the ones to
// copy again.
//
// The file holds slots, each: magic "DXAL", u32 version 1, u64 generation,
// u64 region size, u32 volume count, per volume (u16 name length, name, u64
// size, u64 word count W, W × u64 bit words), u32 CRC-32C; big-endian, zero
// padded to a multiple of 4096 bytes, at an offset that is a multiple of 4096.
// Part of the on-disk format: never change.
//
// A run writes its slots alternately at offset 0 and at a stride of at least
// one slot. Open finds slots by scanning every 4096-byte boundary and takes
// the valid one with the highest generation, so where the slots lie does not
// depend on the volume set: a volume added, removed or resized since the
// last run (whose slots had another size) changes nothing in what is found.
// The first write of a run goes where it cannot touch the slot Open took, so
// a torn write always leaves that one; files of earlier versions, with slots
// at 0 and at their fixed size, read the same way.
package actlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"duplex/disk"
)

// DefaultRegion is the activity log's granularity.
const DefaultRegion = 1 << 20

// Ahead is how many regions beyond a sequential write are marked with it:
// a stream of large sequential writes enters a fresh region every region's
// worth of data, and would otherwise wait for a write and sync of the log
// each time (at 1 MiB regions, one per 1 MiB write).
const Ahead = 16

// aheadMin is the smallest write that marks regions ahead: small writes
// that happen to fall into neighbouring regions are no stream.
const aheadMin = 64 << 10

const (
	magic   = "DXAL"
	version = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type vol struct {
	size   int64
	bits   []uint64 // marked on disk (or about to be)
	counts []int32  // updates captured and not yet acknowledged, per region
	// writing counts, per region, the writes marked (Mark) whose pwrite
	// has not returned (Wrote): the secondary may acknowledge a write
	// before it reaches the volume, and a flush covers only the writes
	// that returned before it began.
	writing []int32
	used    []int64  // when each region last had an update captured (unix ns)
	sticky  []uint64 // marks that stay until Unstick (writes of a suspended pair)
	// handed are the sticky marks a failed flush handed over (see
	// SetFlush) that no Stick has taken since: Unstick keeps them, as
	// the pair that dropped its marks has not taken these yet.
	handed []uint64
	// since is, per region, the generation from which the log holds its
	// mark (counted or sticky): the region is marked on disk once that
	// generation is durable.
	since []uint64
	// flushing is the volume's flush under way, if any: one at a time,
	// and the regions it is to unmark stay marked until it has passed.
	flushing *flushOp
}

// flushOp is one flush of a volume, run in a goroutine of its own: an
// fdatasync may take minutes, or never end (a disk, an NFS or iSCSI
// backing that stops answering), and whoever started it goes on meanwhile.
type flushOp struct {
	started time.Time
	// due are the regions to unmark once it has passed, with the stamps
	// they had as it began: one written to since is left marked.
	due  []dueRegion
	done chan struct{} // closed once err is set
	err  error
}

type dueRegion struct {
	r    int
	used int64
}

func (op *flushOp) ended() bool {
	select {
	case <-op.done:
		return true
	default:
		return false
	}
}

// Log is an open activity log. It is safe for concurrent use.
//
// Marks are committed as a group: a write whose regions are all marked on
// disk goes on at once, even while the log is being written; a write that
// sets a fresh mark waits for the first generation written after it, which
// carries every mark set before it was encoded. The log's mutex is not held
// while a generation is written and synced, so a sync of the log (a fresh
// region) holds up only the writes that need it, and the marks set meanwhile
// share the next one.
type Log struct {
	path   string
	f      disk.File
	region int64
	slot   int64 // the stride: offset of the second slot
	mu     sync.Mutex
	// gen is the last generation encoded, durable the last one written and
	// synced; committing says one is being written (by one caller at a
	// time, which releases mu meanwhile), and committed is signalled when
	// it ends.
	gen        uint64
	durable    uint64
	committing bool
	committed  sync.Cond
	// committingSince is when the generation being written began, and
	// waiting how many marks of writes wait for one: a log whose disk
	// stops answering holds every write to a region not yet marked, and
	// status says so (see Waits).
	committingSince time.Time
	waiting         int
	vols            map[string]*vol
	names           []string
	syncs           uint64
	waits           uint64 // marks that waited for a generation to be written
	// off, once set, says why the log is no longer kept (see WritePath):
	// marks cost nothing and are written nowhere.
	off error
	// fallback, if set, is asked to let the run go on without the log
	// when an update's marks cannot be written (see WritePath).
	fallback func(error) error
	closed   bool
	// flush and flushFailed: see SetFlush.
	flush       func(vol string) error
	flushFailed func(vol string, regions [][2]int64, err error)
	// ended: see FlushEnded.
	ended chan struct{}
}

// Open opens (creating) the log at path for the given volumes and returns it
// with the regions marked by the previous run.
func Open(path string, sizes map[string]int64, region int64) (*Log, map[string][][2]int64, error) {
	return OpenFS(nil, path, sizes, region)
}

// OpenFS is Open on fsys (disk.OS when nil).
func OpenFS(fsys disk.FS, path string, sizes map[string]int64, region int64) (*Log, map[string][][2]int64, error) {
	if region <= 0 {
		region = DefaultRegion
	}
	l := &Log{path: path, region: region, vols: map[string]*vol{}, ended: make(chan struct{}, 1)}
	l.committed.L = &l.mu
	for name, size := range sizes {
		n := (size + region - 1) / region
		w := (n + 63) / 64
		l.vols[name] = &vol{size: size, bits: make([]uint64, w), counts: make([]int32, n), writing: make([]int32, n), used: make([]int64, n), sticky: make([]uint64, w),
			handed: make([]uint64, w), since: make([]uint64, n)}
		l.names = append(l.names, name)
	}
	sort.Strings(l.names)
	l.slot = align(int64(len(l.encode())))
	f, err := disk.Or(fsys).OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("activity log %s: %w", path, err)
	}
	l.f = f
	prev, err := l.readPrevious()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return l, prev, nil
}

func align(n int64) int64 { return (n + 4095) / 4096 * 4096 }

// readPrevious decodes the newest valid slot; its marks are returned as byte
// ranges per volume. The log itself starts empty, except for those marks
// (sticky). It places this run's slots so that the first write leaves the
// newest slot intact.
func (l *Log) readPrevious() (map[string][][2]int64, error) {
	st, err := l.f.Stat()
	if err != nil {
		return nil, fmt.Errorf("activity log %s: %w", l.path, err)
	}
	out := map[string][][2]int64{}
	if st.Size() == 0 {
		return out, nil
	}
	data := make([]byte, min(st.Size(), 1<<30))
	if _, err := l.f.ReadAt(data, 0); err != nil && int64(len(data)) != st.Size() {
		return nil, fmt.Errorf("activity log %s: %w", l.path, err)
	}
	best, bestGen, bestOff, bestLen, found := newestValidSlot(data)
	if !found {
		// Every slot torn or corrupt: the caller cannot know what to resync.
		return nil, fmt.Errorf("activity log %s: no valid slot: %w", l.path, ErrCorrupt)
	}
	// Slot i of this run is at i × l.slot and slot (gen+1) % 2 is written
	// next: pick both so that the next write misses [bestOff, bestOff+bestLen).
	next := int64(1)
	switch {
	case bestOff == 0:
		l.slot = max(l.slot, bestLen)
	case l.slot <= bestOff:
		l.slot, next = bestOff, 0
	default:
		l.slot = max(l.slot, bestOff+bestLen)
	}
	l.gen = bestGen
	if int64((l.gen+1)%2) != next {
		l.gen++
	}
	for name, r := range best {
		out[name] = r
		// Until the caller has copied them again (and says so with
		// Unstick), the previous run's marks stay marked: a second crash
		// must find them too.
		if v, ok := l.vols[name]; ok {
			for _, rg := range r {
				first, last := l.span(v, rg[0], rg[1])
				for x := first; x <= last; x++ {
					v.sticky[x/64] |= 1 << (x % 64)
				}
			}
		}
	}
	return out, nil
}

// newestValidSlot finds the valid slot with the highest generation in a log's
// content: its marks, generation, offset and padded length.
func newestValidSlot(data []byte) (best map[string][][2]int64, bestGen uint64, bestOff, bestLen int64, found bool) {
	for off := int64(0); off+4 <= int64(len(data)); off += 4096 {
		if string(data[off:off+4]) != magic {
			continue
		}
		gen, marks, n, err := decodeSlot(data[off:])
		if err == nil && (!found || gen > bestGen) {
			best, bestGen, bestOff, bestLen, found = marks, gen, off, int64(n), true
		}
	}
	return best, bestGen, bestOff, bestLen, found
}

// ReadMarks returns the regions the log at path marks, per volume, as Open
// would, without opening it for writing: for a look at a stopped primary's
// log that changes nothing. A missing log marks nothing.
func ReadMarks(fsys disk.FS, path string) (map[string][][2]int64, error) {
	data, err := disk.ReadFile(disk.Or(fsys), path)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(data) == 0) {
		return map[string][][2]int64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("activity log %s: %w", path, err)
	}
	marks, _, _, _, found := newestValidSlot(data)
	if !found {
		return nil, fmt.Errorf("activity log %s: no valid slot: %w", path, ErrCorrupt)
	}
	return marks, nil
}

// ErrCorrupt is returned when no slot of an existing log decodes.
var ErrCorrupt = errors.New("activity log corrupt")

// ErrWrite is returned, wrapping the disk's error, when the marks could not
// be written and synced: the update a mark guards must not reach its
// volume. The log is every volume's, so until its disk works again every
// update that needs a fresh mark fails the same way, whatever its volume.
var ErrWrite = errors.New("marks not written")

// decodeSlot parses one slot; n is its padded size (0 if unknown).
func decodeSlot(b []byte) (gen uint64, marks map[string][][2]int64, n int, err error) {
	be := binary.BigEndian
	bad := func(what string) (uint64, map[string][][2]int64, int, error) {
		return 0, nil, n, fmt.Errorf("slot: %s: %w", what, ErrCorrupt)
	}
	if len(b) < 28 || string(b[:4]) != magic || be.Uint32(b[4:]) != version {
		return bad("header")
	}
	gen, region := be.Uint64(b[8:]), int64(be.Uint64(b[16:]))
	nv := int(be.Uint32(b[24:]))
	p := 28
	marks = map[string][][2]int64{}
	for range nv {
		if len(b) < p+2 {
			return bad("truncated")
		}
		nl := int(be.Uint16(b[p:]))
		if len(b) < p+2+nl+16 {
			return bad("truncated")
		}
		name := string(b[p+2 : p+2+nl])
		size := int64(be.Uint64(b[p+2+nl:]))
		w := be.Uint64(b[p+2+nl+8:])
		p += 2 + nl + 16
		if w > uint64(len(b)-p)/8 || region <= 0 || region > 1<<40 || size < 0 {
			return bad("word count")
		}
		for i := range int(w) {
			word := be.Uint64(b[p+8*i:])
			for bit := 0; bit < 64; bit++ {
				if word&(1<<bit) != 0 {
					off := (int64(i)*64 + int64(bit)) * region
					if off < size {
						marks[name] = append(marks[name], [2]int64{off, min(region, size-off)})
					}
				}
			}
		}
		p += 8 * int(w)
	}
	if len(b) < p+4 {
		return bad("truncated")
	}
	if crc32.Checksum(b[:p], castagnoli) != be.Uint32(b[p:]) {
		return bad("CRC mismatch")
	}
	n = (p + 4 + 4095) / 4096 * 4096
	return gen, marks, n, nil
}

func (l *Log) encode() []byte {
	be := binary.BigEndian
	b := append([]byte(magic), 0, 0, 0, 0)
	be.PutUint32(b[4:], version)
	b = be.AppendUint64(b, l.gen)
	b = be.AppendUint64(b, uint64(l.region))
	b = be.AppendUint32(b, uint32(len(l.names)))
	for _, name := range l.names {
		v := l.vols[name]
		b = be.AppendUint16(b, uint16(len(name)))
		b = append(b, name...)
		b = be.AppendUint64(b, uint64(v.size))
		b = be.AppendUint64(b, uint64(len(v.bits)))
		for i, w := range v.bits {
			b = be.AppendUint64(b, w|v.sticky[i])
		}
	}
	return be.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// persist writes the marks as they are now as the next generation and syncs
// it, once no other generation is being written. Called with l.mu held,
// which it releases while it writes. A failed persist can be retried: every
// slot holds all the marks, and the retry rewrites a whole slot, so the pages
// a failed fsync may have dropped are written again rather than trusted.
func (l *Log) persist() error {
	for l.committing {
		l.committed.Wait()
	}
	l.committing = true
	l.committingSince = time.Now()
	l.gen++
	gen := l.gen
	b := l.encode()
	l.mu.Unlock()
	_, err := l.f.WriteAt(b, int64(gen%2)*l.slot)
	if err != nil {
		err = fmt.Errorf("activity log %s: %w: %w", l.path, ErrWrite, err)
	} else if err = l.f.Sync(); err != nil {
		err = fmt.Errorf("activity log %s: %w: fsync: %w", l.path, ErrWrite, err)
	}
	l.mu.Lock()
	l.committing = false
	l.committed.Broadcast()
	if err != nil {
		// The slot may be torn: the retry goes to the same slot, never over
		// the other one, which holds the newest durable generation. Marks
		// set meanwhile wait for a generation after the retry's.
		l.gen--
		return err
	}
	l.durable = gen
	l.syncs++
	return nil
}

// await returns once generation need, which carries the marks a caller set
// or found set, is durable, writing it if no one else is. Called with l.mu
// held.
func (l *Log) await(need uint64) error {
	for l.durable < need {
		if l.committing {
			l.committed.Wait()
			continue
		}
		if err := l.persist(); err != nil {
			return err
		}
	}
	return nil
}

// markAhead keeps a stream of large sequential writes from waiting for the
// log past its start: once the write at [first, last], its regions on
// disk, is within Ahead regions of the end of the marks ahead of it (a
// stream: the region before it is marked), the Ahead regions after that
// end are marked, and written in the background, so that they are on disk
// before the stream gets there: a stream has from Ahead to 2*Ahead
// regions marked ahead of it, the time to write Ahead regions for each
// sync of the log. A stream whose log writes keep up never
// waits for one (the writes that do reach a mark not yet durable wait for
// it, as ever); otherwise it stood still for a sync every Ahead regions,
// and under a burst of writes to the page cache a sync of the log took
// 100-450 ms on a loaded machine. As many syncs as before: one per Ahead
// regions. Called with l.mu held.
func (l *Log) markAhead(v *vol, first, last, now int64) {
	marked := func(r int64) bool { return v.bits[r/64]&(1<<(r%64)) != 0 }
	n := int64(len(v.counts))
	if first == 0 || !marked(first-1) {
		return
	}
	end := last
	for end+1 < n && end-last < Ahead && marked(end+1) {
		end++
	}
	if end-last >= Ahead || end+1 >= n {
		return
	}
	for r := end + 1; r <= min(end+Ahead, n-1); r++ {
		l.set(v, r, false)
		stamp(v, r, now)
	}
	go l.commitAhead(l.gen + 1)
}

// commitAhead writes the log until generation need, which carries marks
// set ahead of a stream, is durable. A failure is left to the writes that
// reach those regions: they wait for a generation that carries the marks,
// and write the log again.
func (l *Log) commitAhead(need uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.off == nil {
		_ = l.await(need)
	}
}

// set marks region r of v (counted, or sticky), and returns the generation
// that carries the mark, the next one encoded if the mark is fresh, and
// whether it was.
func (l *Log) set(v *vol, r int64, sticky bool) (since uint64, fresh bool) {
	w, bit := r/64, uint64(1)<<(r%64)
	if fresh = (v.bits[w]|v.sticky[w])&bit == 0; fresh {
		v.since[r] = l.gen + 1
	}
	if sticky {
		v.sticky[w] |= bit
	} else {
		v.bits[w] |= bit
	}
	return v.since[r], fresh
}

func (l *Log) span(v *vol, off, length int64) (int64, int64) {
	if length <= 0 {
		return 0, -1
	}
	first := off / l.region
	last := min((off+length-1)/l.region, int64(len(v.counts))-1)
	return first, last
}

// Mark counts one captured write over [off, off+length) and returns once its
// regions are marked on disk. The regions count as in use (see Idle).
func (l *Log) Mark(name string, off, length int64) error {
	_, err := l.mark(name, off, length, true, false)
	return err
}

// MarkNow is Mark for a write that must not wait: it counts the write only
// if its regions are marked on disk already (or the log is off), and says
// whether it did. Nothing else changes where it did not.
func (l *Log) MarkNow(name string, off, length int64) bool {
	ok, _ := l.mark(name, off, length, true, true)
	return ok
}

// MarkedOnDisk says a Mark of [off, off+length) now would not wait for a write of
// the log: its regions are marked on disk already, or the log is off.
func (l *Log) MarkedOnDisk(name string, off, length int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.off != nil {
		return true
	}
	v, ok := l.vols[name]
	if !ok {
		return false
	}
	first, last := l.span(v, off, length)
	return l.onDisk(v, first, last)
}

// onDisk says regions first to last of v are marked on disk. Called with
// l.mu held.
func (l *Log) onDisk(v *vol, first, last int64) bool {
	for r := first; r <= last; r++ {
		if (v.bits[r/64]|v.sticky[r/64])&(1<<(r%64)) == 0 || v.since[r] > l.durable {
			return false
		}
	}
	return true
}

// MarkCopy is Mark for a copy update (initial copy, resync): it does not keep
// the regions in use, so a copy does not widen what a crash must copy again.
func (l *Log) MarkCopy(name string, off, length int64) error {
	_, err := l.mark(name, off, length, false, false)
	return err
}

// mark is Mark (hot) or MarkCopy; now, it marks nothing and returns false
// where the marks are not on disk already.
func (l *Log) mark(name string, off, length int64, hot, now bool) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.off != nil {
		return true, nil
	}
	v, ok := l.vols[name]
	if !ok {
		return false, fmt.Errorf("activity log: no volume %q", name)
	}
	first, last := l.span(v, off, length)
	if now && !l.onDisk(v, first, last) {
		return false, nil
	}
	var need uint64
	f := int64(-1) // the first region this write marks afresh
	wall := wallNow()
	for r := first; r <= last; r++ {
		v.counts[r]++
		if hot {
			stamp(v, r, wall)
			v.writing[r]++
		}
		since, fresh := l.set(v, r, false)
		need = max(need, since)
		if fresh && f < 0 {
			f = r
		}
	}
	if need <= l.durable {
		if hot && length >= aheadMin {
			l.markAhead(v, first, last, wall)
		}
		return true, nil
	}
	if hot && length >= aheadMin && f > 0 && v.bits[(f-1)/64]&(1<<((f-1)%64)) != 0 {
		// A stream of large writes crossed into a fresh region after a
		// marked one: the regions ahead of it go into the same write of
		// the log. Marking more than is written is safe (a crash copies
		// them again, for nothing); the ones the stream does not reach
		// are cleared when idle, as every other.
		for r := last + 1; r <= min(last+Ahead, int64(len(v.counts))-1); r++ {
			if v.bits[r/64]&(1<<(r%64)) == 0 {
				l.set(v, r, false)
				stamp(v, r, wall)
			}
		}
	}
	l.waits++
	l.waiting++
	err := l.await(need)
	l.waiting--
	if err != nil {
		// The write this mark guards fails, so it is not counted. The
		// marks stay set but not on disk (their generation is not
		// durable), so the next write to these regions writes the log
		// again rather than find them done, and any write of it carries
		// them.
		for r := first; r <= last; r++ {
			v.counts[r]--
			if hot {
				v.writing[r]--
			}
		}
		return false, err
	}
	return true, nil
}

// Stick marks [off, off+length) until Unstick, without counting: the writes of
// a suspended pair, which no acknowledgement will clear.
func (l *Log) Stick(name string, off, length int64) error {
	_, err := l.stick(name, off, length, false)
	return err
}

// StickNow is Stick for a write that must not wait, as MarkNow is Mark's.
func (l *Log) StickNow(name string, off, length int64) bool {
	ok, _ := l.stick(name, off, length, true)
	return ok
}

func (l *Log) stick(name string, off, length int64, now bool) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.off != nil {
		return true, nil
	}
	v, ok := l.vols[name]
	if !ok {
		return false, fmt.Errorf("activity log: no volume %q", name)
	}
	first, last := l.span(v, off, length)
	if now && !l.onDisk(v, first, last) {
		return false, nil
	}
	var need uint64
	for r := first; r <= last; r++ {
		since, _ := l.set(v, r, true)
		need = max(need, since)
		// Taken: the caller's pair has the region in its bitmap now.
		v.handed[r/64] &^= 1 << (r % 64)
	}
	// Not on disk after a failure: the generation is not durable, so the
	// next write to these regions tries again. A write of a suspended
	// pair waits here as one of a duplex pair waits in Mark (Waits).
	if l.durable < need {
		l.waiting++
		defer func() { l.waiting-- }()
	}
	if err := l.await(need); err != nil {
		return false, err
	}
	return true, nil
}

// Unstick drops a volume's sticky marks (its pair resumed; the resync's copy
// updates are marked and counted themselves), but for the regions a failed
// flush handed over that no Stick has taken yet: the pair suspends for
// them after it dropped the others, and until it has, the log alone keeps
// them for a crash.
func (l *Log) Unstick(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if v, ok := l.vols[name]; ok {
		for i := range v.sticky {
			v.sticky[i] &= v.handed[i]
		}
	}
}

// Done uncounts one acknowledged update. Its regions are unmarked by the next
// Clean.
func (l *Log) Done(name string, off, length int64) {
	l.uncount(name, off, length, func(v *vol) []int32 { return v.counts })
}

// Wrote says that the pwrite of a write Mark counted has returned (or
// failed, or was never made): Clean unmarks no region with a write on its
// way to the volume, as its flush would not cover it. Every Mark that
// returned nil is matched by one Wrote, besides its Done.
func (l *Log) Wrote(name string, off, length int64) {
	l.uncount(name, off, length, func(v *vol) []int32 { return v.writing })
}

// uncount takes one off the counts (of v, by which) of the regions of
// [off, off+length) of volume name.
func (l *Log) uncount(name string, off, length int64, which func(v *vol) []int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.vols[name]
	if !ok {
		return
	}
	counts := which(v)
	first, last := l.span(v, off, length)
	for r := first; r <= last; r++ {
		if counts[r] > 0 {
			counts[r]--
		}
	}
}

// stamp records region r of v as used now. The stamp only grows, so that
// Clean tells a region used during its flush by a stamp that changed,
// whatever the clock did meanwhile (see Clean).
func stamp(v *vol, r int64, now int64) {
	v.used[r] = max(now, v.used[r]+1)
}

// wallNow is the time regions are stamped with as used (unix ns); tests
// step it as an NTP step or an operator steps the clock.
var wallNow = func() int64 { return time.Now().UnixNano() }

// Idle is how long a region must go without updates before Clean unmarks it.
// Like DRBD's hot extents, regions in use stay marked: otherwise every write
// to a region that was just cleared would pay a sync of the log again.
var Idle = 5 * time.Second

// Clean unmarks regions with no unacknowledged update that have been idle for
// Idle, and persists the log if anything changed. The volumes whose
// regions it would unmark are flushed first (see SetFlush), once each, and
// without mu held, so that the write path never waits for a flush: a region
// written to again meanwhile stays marked. That is told by its use's stamp,
// which every write changes (see stamp), not by the time it says: a clock
// stepped back during the flush stamps a later write as older. Clean waits
// for the flushes; Sweep does not.
func (l *Log) Clean() error { return l.CleanWithin(context.Background()) }

// CleanWithin is Clean waiting for the flushes until ctx ends: the regions
// of a flush that has not ended by then stay marked, and it goes on in the
// background, its result taken by a later Clean, Sweep or Flush.
func (l *Log) CleanWithin(ctx context.Context) error { return l.clean(ctx, true) }

// Sweep is Clean without the wait: it unmarks the regions of the flushes
// that have ended since, and starts those of the volumes with regions
// idle, each in a goroutine of its own, one per volume at a time. The pair
// manager's loop calls it: a flush that hangs (a disk that stops
// answering) must not hold up the copies, promotions and saves of the
// other pairs, nor the stop; it keeps only its own volume's regions
// marked, which is safe (a crash copies them again).
func (l *Log) Sweep() error { return l.clean(context.Background(), false) }

func (l *Log) clean(ctx context.Context, wait bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	// The flushes that ended hand their result over first, even with the
	// log turned off meanwhile: a failed one hands its whole volume over.
	changed, errs, _ := l.endFlushes(nil, l.names)
	if l.off != nil {
		return errs
	}
	cutoff := wallNow() - int64(Idle)
	for _, name := range l.names {
		v := l.vols[name]
		if v.flushing != nil {
			continue
		}
		var due []dueRegion
		for r := range v.counts {
			if v.counts[r] == 0 && v.writing[r] == 0 && v.used[r] < cutoff && v.bits[r/64]&(1<<(r%64)) != 0 {
				due = append(due, dueRegion{r, v.used[r]})
			}
		}
		if len(due) == 0 {
			continue
		}
		if l.flush == nil {
			changed = unmark(v, due) || changed
			continue
		}
		l.startFlush(name, v, due)
	}
	if wait {
		c, err, _ := l.endFlushes(ctx, l.names)
		changed, errs = changed || c, errors.Join(errs, err)
	}
	return l.persistIf(changed, errs)
}

// persistIf persists the log if changed and it is still kept, and
// returns errs joined with its error. Called with mu held.
func (l *Log) persistIf(changed bool, errs error) error {
	if changed && l.off == nil {
		return errors.Join(errs, l.persist())
	}
	return errs
}

// unmark unmarks the regions due whose stamp has not changed since their
// flush began, and that have no update under way now, and reports whether
// it unmarked any. Called with mu held.
func unmark(v *vol, due []dueRegion) bool {
	changed := false
	for _, d := range due {
		r := d.r
		w, bit := r/64, uint64(1)<<(r%64)
		if v.used[r] == d.used && v.counts[r] == 0 && v.writing[r] == 0 && v.bits[w]&bit != 0 {
			v.bits[w] &^= bit
			changed = true
		}
	}
	return changed
}

// startFlush starts a flush of volume name, which unmarks due once it has
// passed (see endFlush). It covers the writes that returned (Wrote) before
// it: called with mu held, the regions due chosen under it. Called with
// mu held.
func (l *Log) startFlush(name string, v *vol, due []dueRegion) {
	op := &flushOp{started: time.Now(), due: due, done: make(chan struct{})}
	v.flushing = op
	flush, ended := l.flush, l.ended
	go func() {
		op.err = flush(name)
		close(op.done)
		select {
		case ended <- struct{}{}:
		default: // one already waits, and what it wakes takes this flush too
		}
	}()
}

// FlushEnded is signalled once a flush that Sweep started has ended, so
// that the pair manager's loop calls TakeEnded at once: the regions are
// unmarked as soon as the flush has passed, as Clean did in the same
// call, not on the loop's next pass a second later (a crash meanwhile
// copies them again: after an initial copy, every region of every
// volume). One signal may stand for several flushes; it is sent once the
// flush's result is set.
func (l *Log) FlushEnded() <-chan struct{} { return l.ended }

// TakeEnded takes the results of the flushes that have ended, as Sweep
// does first, and starts none: flushes start at Sweep's pace alone, as
// often as Clean flushed, however soon one ends.
func (l *Log) TakeEnded() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed, errs, _ := l.endFlushes(nil, l.names)
	return l.persistIf(changed, errs)
}

// endFlushes takes the results of the flushes of the named volumes that
// have ended, unmarking the regions of those that passed and handing over
// those of the volumes whose flush failed; with ctx set, it first waits
// for those under way until ctx ends. It returns whether it unmarked
// any, the failures joined, and the volumes whose flush has not ended.
// Called with mu held, which it releases while it waits.
func (l *Log) endFlushes(ctx context.Context, names []string) (changed bool, flushErr error, pending []string) {
	for _, name := range names {
		v := l.vols[name]
		op := v.flushing
		if op == nil {
			continue
		}
		if ctx != nil && !op.ended() {
			l.mu.Unlock()
			select {
			case <-op.done:
			case <-ctx.Done():
			}
			l.mu.Lock()
		}
		if !op.ended() {
			pending = append(pending, name)
			continue
		}
		if v.flushing != op {
			continue // taken meanwhile by another caller
		}
		v.flushing = nil
		if op.err == nil {
			if l.off == nil {
				changed = unmark(v, op.due) || changed
			}
			continue
		}
		err := fmt.Errorf("activity log %s: flushing volume %s before unmarking its regions: %w", l.path, name, op.err)
		flushErr = errors.Join(flushErr, err)
		l.flushFailedLocked(name, v, err)
	}
	return changed, flushErr, pending
}

// SetFlush sets how a volume's writes are made durable (an fdatasync of the
// primary volume): before Clean unmarks a region, the volume's data there
// must be on its disk, or a power loss (or a writeback error, reported
// only by a later fsync) leaves the volume older than the secondary in a
// region no crash recovery copies. If a flush fails, every region of the
// volume marked for its updates stays marked, until an Unstick after a
// Stick of it (the caller took it), and is handed to failed with the
// error, to be treated as a write the volume failed.
// failed is called with the log's mutex held: it must not call the log.
// flush is called in a goroutine of its own, one at a time per volume.
func (l *Log) SetFlush(flush func(vol string) error, failed func(vol string, regions [][2]int64, err error)) {
	l.mu.Lock()
	l.flush, l.flushFailed = flush, failed
	l.mu.Unlock()
}

// ErrFlushPending is returned by Flush, wrapped, when a volume's flush
// has not ended in time: its data is not known to be on its disk.
var ErrFlushPending = errors.New("flush not ended")

// Flush flushes the named volumes (every volume if none), as Clean does
// those it unmarks regions of: a stop calls it before it saves the pair
// state clean. A flush of a volume under way is waited for first, as it
// covers only the writes that returned before it began. It returns the
// flushes' errors, the regions of the volumes that failed handed over,
// and, wrapping ErrFlushPending, names the volumes whose flush had not
// ended when ctx did: their regions stay marked, and the flush goes on in
// the background.
func (l *Log) Flush(ctx context.Context, names ...string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.flush == nil {
		return nil
	}
	if len(names) == 0 {
		names = l.names
	}
	names = slices.DeleteFunc(slices.Clone(names), func(name string) bool { return l.vols[name] == nil })
	changed, errs, pending := l.endFlushes(ctx, names)
	var fresh []string
	for _, name := range names {
		if v := l.vols[name]; v.flushing == nil {
			l.startFlush(name, v, nil)
			fresh = append(fresh, name)
		}
	}
	c, err, p := l.endFlushes(ctx, fresh)
	changed, errs, pending = changed || c, errors.Join(errs, err), append(pending, p...)
	if len(pending) > 0 {
		errs = errors.Join(errs, fmt.Errorf("activity log %s: flushing volume %s: %w", l.path, strings.Join(pending, ", "), ErrFlushPending))
	}
	if changed && l.off == nil {
		errs = errors.Join(errs, l.persist())
	}
	return errs
}

// FlushesUnderWay returns the volumes whose flush is under way, with how
// long each has been running: one that does not end (a disk that stops
// answering) keeps its volume's regions marked.
func (l *Log) FlushesUnderWay() map[string]time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]time.Duration{}
	for name, v := range l.vols {
		if op := v.flushing; op != nil && !op.ended() {
			out[name] = time.Since(op.started)
		}
	}
	return out
}

// flushFailedLocked hands over the marked regions of volume name, whose
// flush failed with err (the whole volume if the log was turned off
// meanwhile). Called with mu held.
func (l *Log) flushFailedLocked(name string, v *vol, err error) {
	if l.off != nil {
		// Turned off meanwhile, the log no longer says which regions
		// the volume may not hold, and the writeback error is
		// reported once: a later flush passes. The whole volume is
		// handed over.
		if l.flushFailed != nil && v.size > 0 {
			l.flushFailed(name, [][2]int64{{0, v.size}}, err)
		}
		return
	}
	var regions [][2]int64
	for r := range v.counts {
		w, bit := r/64, uint64(1)<<(r%64)
		if v.bits[w]&bit == 0 {
			continue
		}
		// Sticky: the marks must outlast a later flush that passes
		// (the kernel reports a writeback error once), until the
		// pair's resume copies the regions again. A region with no
		// update under way is then left to its sticky mark alone,
		// so that the cleans that follow do not flush the volume
		// for it again, nor hand it over again, each time the flush
		// fails.
		v.sticky[w] |= bit
		v.handed[w] |= bit
		if v.counts[r] == 0 && v.writing[r] == 0 {
			v.bits[w] &^= bit
		}
		off := int64(r) * l.region
		regions = append(regions, [2]int64{off, min(l.region, v.size-off)})
	}
	if l.flushFailed != nil && len(regions) > 0 {
		l.flushFailed(name, regions, err)
	}
}

// Marked returns the number of regions marked now (counted or sticky).
func (l *Log) Marked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, v := range l.vols {
		for i := range v.bits {
			for w := v.bits[i] | v.sticky[i]; w != 0; w &= w - 1 {
				n++
			}
		}
	}
	return n
}

// Syncs returns how many times the log was written and synced.
func (l *Log) Syncs() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.syncs
}

// Waits returns how long the write of the log under way has taken, 0 if
// none is, and how many writes wait for their marks to be written: a
// disk that stops answering holds them, neither failing nor returning,
// and they cannot be acknowledged unmarked.
func (l *Log) Waits() (time.Duration, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.committing {
		return 0, l.waiting
	}
	return time.Since(l.committingSince), l.waiting
}

// Abandon gives the log up at a stop that could not wait for its disk
// (see Waits): the file is closed under a write that hangs, so that
// whatever has not reached the disk yet fails rather than lands after the
// stop, and a mark waiting for it fails: its write is never acknowledged.
// What the log holds on disk is a generation written before, which marks
// every region of a write acknowledged since (a write waits for the
// generation that carries its marks): after the stop, not saved clean,
// the next start copies them again.
func (l *Log) Abandon() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.f.Close()
}

// Close persists the current marks and closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.off != nil {
		// What it holds is not this run's: the pair state says so.
		return l.f.Close()
	}
	// A write that comes while this persist writes (without mu) waits for
	// it, and then either finds its marks in it or fails on the closed
	// file, as it did when Close held mu throughout.
	err := l.persist()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// SetFallback sets what the write path (WritePath) asks when the marks of
// an update cannot be written: f returns nil once it is durably recorded
// that this run goes on without the log (after an unclean stop, every
// region is to copy, not only the logged ones), and the log is then off
// for the rest of the run. Otherwise the update fails, as it does without
// a fallback.
func (l *Log) SetFallback(f func(err error) error) {
	l.mu.Lock()
	l.fallback = f
	l.mu.Unlock()
}

// Off returns why the log was turned off (the error that its marks could
// not be written with), nil while it is kept.
func (l *Log) Off() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.off
}

// WritePath is the log as the write path and the copies mark it
// (subsystem.ActivityLog): an update whose marks cannot be written goes on
// without them if the fallback lets it. Its caller holds no lock the
// fallback may take, unlike the pair manager's own calls of Stick, which
// report a failure and go on.
type WritePath struct{ *Log }

// Mark is Log.Mark, turning the log off if it cannot be written and the
// fallback lets the run go on without it.
func (w WritePath) Mark(name string, off, length int64) error {
	return w.fallBack(w.Log.Mark(name, off, length))
}

// MarkCopy is Log.MarkCopy, as Mark.
func (w WritePath) MarkCopy(name string, off, length int64) error {
	return w.fallBack(w.Log.MarkCopy(name, off, length))
}

// Stick is Log.Stick, as Mark.
func (w WritePath) Stick(name string, off, length int64) error {
	return w.fallBack(w.Log.Stick(name, off, length))
}

// fallBack returns nil for an update whose marks failed (err) once the
// log is off: turned off only after the fallback recorded that the run
// has no log, so that no update is acknowledged marked nowhere, neither
// in the log nor as a run whose crash copies everything. The first
// failure turns it off, without a retry: a write and fsync of the log
// that failed (EIO, ENOSPC) rarely passes milliseconds later, the update
// would wait for the retry, and going on without the log costs nothing
// until a crash.
func (l *Log) fallBack(err error) error {
	if err == nil || !errors.Is(err, ErrWrite) {
		return err
	}
	l.mu.Lock()
	f, off, closed := l.fallback, l.off, l.closed
	l.mu.Unlock()
	if off != nil {
		return nil
	}
	if f == nil || closed {
		// Closed, the primary is stopping: its state is saved, maybe as a
		// clean stop, which a late update must not turn into a full copy
		// of every pair.
		return err
	}
	if ferr := f(err); ferr != nil {
		return fmt.Errorf("%w; nor can this run go on without the log: %w", err, ferr)
	}
	l.mu.Lock()
	if l.off == nil {
		l.off = err
	}
	l.mu.Unlock()
	return nil
}
