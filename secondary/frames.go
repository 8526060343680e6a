package secondary

import (
	"math/bits"
	"slices"
	"sync"
	"time"
	"unsafe"

	"duplex/consistency"
	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// Frame buffers. Every record set's update data aliases the frame it came
// in (recordset.Decode does not copy), and frames of several MiB arrive at
// the apply rate: a new buffer per frame is zeroed by the runtime before
// the transport overwrites it, 7–9 % of the secondary's CPU under 1 MiB
// writes. The receiver lends the transport recycled buffers instead, and
// recycles a frame only once nothing can read it any more (see retire).

// poisonFrames fills a buffer as it is recycled, so that a reader still
// holding it reads garbage (and, under the race detector, races with the
// fill): tests set it.
var poisonFrames bool

const (
	minPooledFrame = 4 << 10   // smaller frames are cheap to zero
	maxPooledFrame = 512 << 20 // above every frame limit
	// classesPerDoubling size classes between powers of two bound the
	// waste of a new buffer to a quarter of the frame (of a recycled one,
	// taken from a class up to one doubling larger, to one and a half
	// frames).
	classesPerDoubling = 4
)

var framePools [bits.UintSize * classesPerDoubling]sync.Pool

// Frames of hugeFrameMin bytes or more are made of huge pages
// (disk.DirectBuffer) and kept between frames in hugeFrames, not in the
// pools. The journal's and the volumes' direct writes take a sequential
// writer's updates from the frames they arrived in (records with gaps,
// placed frames), and a direct write pins every page of its buffer: 1 MiB
// from small pages cost about what its copy into an aligned buffer costs
// (0.14–0.18 ms of CPU on this kind of machine), from huge pages 0.06 ms,
// and the device took it in larger segments, sooner. A huge-page buffer
// is costly to make (faulted in and zeroed 2 MiB at a time), and the
// pools drop theirs at every collection: they are kept until
// hugeFramesIdle passes without a frame, up to maxKeptHuge bytes.
const (
	hugeFrameMin   = 2 << 20
	maxKeptHuge    = 128 << 20
	hugeFramesIdle = time.Minute
)

var hugeFrames struct {
	mu    sync.Mutex
	kept  [][]byte // oldest first
	bytes int      // the memory of kept's buffers (frameCost)
	used  bool     // a buffer was taken or put since the timer was set
	timer *time.Timer
}

// getHuge returns the last kept buffer of class i, or of a class up to
// one doubling larger, or nil.
func getHuge(i int) []byte {
	h := &hugeFrames
	h.mu.Lock()
	defer h.mu.Unlock()
	h.used = true
	for k := len(h.kept) - 1; k >= 0; k-- {
		if j, _ := frameClass(cap(h.kept[k])); j >= i && j <= i+classesPerDoubling {
			b := h.kept[k]
			h.kept = slices.Delete(h.kept, k, k+1)
			h.bytes -= frameCost(cap(b))
			return b
		}
	}
	return nil
}

// putHuge keeps b, letting go of the oldest kept buffers past maxKeptHuge
// bytes (or of b alone, larger than that): a frame's size follows the
// write rate, and buffers of a rate gone by would otherwise fill the room
// and leave the frames of the present one to be made anew.
func putHuge(b []byte) {
	h := &hugeFrames
	h.mu.Lock()
	defer h.mu.Unlock()
	h.used = true
	cost := frameCost(cap(b))
	if cost > maxKeptHuge {
		// A backlog's frame, up to the frame limit: it cannot be kept,
		// and the usual frames' buffers are not let go for it.
		return
	}
	h.kept = append(h.kept, b)
	h.bytes += cost
	for h.bytes > maxKeptHuge {
		h.bytes -= frameCost(cap(h.kept[0]))
		h.kept = slices.Delete(h.kept, 0, 1)
	}
	if h.timer == nil {
		h.timer = time.AfterFunc(hugeFramesIdle, dropIdleHuge)
	}
}

// dropIdleHuge lets the kept buffers go if no frame took or put one since
// it was set, and is set again otherwise.
func dropIdleHuge() {
	h := &hugeFrames
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.used && h.timer != nil {
		h.used = false
		h.timer.Reset(hugeFramesIdle)
		return
	}
	h.kept, h.bytes = nil, 0
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
}

// frameClass returns the pool index and capacity of a buffer for n bytes.
func frameClass(n int) (int, int) {
	b := bits.Len(uint(n - 1)) // 2^(b-1) < n <= 2^b
	step := 1 << (b - 3)
	steps := (n + step - 1) / step // 5..8
	return b*classesPerDoubling + steps - 5, steps * step
}

// getFrame returns a buffer of length n, its contents whatever a recycled
// frame left there.
func getFrame(n int) []byte {
	if n < minPooledFrame || n > maxPooledFrame {
		return make([]byte, n)
	}
	i, size := frameClass(n)
	if size >= hugeFrameMin {
		if b := getHuge(i); b != nil {
			return b[:n]
		}
		return disk.DirectBuffer(size)[:n]
	}
	// A frame's size follows the write rate, so a steady load's frames
	// spread over neighbouring classes and each class's own buffers run
	// out now and then while the next class up holds some: 8 % of a 4 KiB
	// random-write load's frames were new buffers, each zeroed by the
	// runtime and faulted in page by page by the kernel. A recycled buffer
	// up to one doubling larger is taken first; it returns to its own
	// class.
	for j := i; j <= i+classesPerDoubling && j < len(framePools); j++ {
		if p, ok := framePools[j].Get().(*[]byte); ok {
			return (*p)[:n]
		}
	}
	if 2*size > hugeFrameMin {
		if b := getHuge(i); b != nil {
			return b[:n]
		}
	}
	return make([]byte, n, size)
}

// putFrame recycles f, which nothing may read or write any more.
func putFrame(f []byte) {
	c := cap(f)
	if c < minPooledFrame || c > maxPooledFrame {
		return
	}
	i, size := frameClass(c)
	if size != c {
		return // not one of getFrame's
	}
	f = f[:c]
	if poisonFrames {
		// Doubling copies: a write a byte at a time is instrumented
		// byte by byte under -race, seconds for a test's stream.
		f[0] = 0xA5
		for n := 1; n < len(f); n *= 2 {
			copy(f[n:], f[:n])
		}
	}
	if size >= hugeFrameMin {
		putHuge(f)
		return
	}
	framePools[i].Put(&f)
}

// placeAlign is where a placed frame puts its first record set's data: on
// a page boundary. A sequential writer's updates lie back to back in the
// payload, each whole pages long, so all of them then lie on page
// boundaries, where the volume's direct writes (volume.WriteThrough) take
// them from the frame rather than copying them into an aligned buffer; the
// journal's records put their gaps wherever the data lies, so they take
// them in place all the same.
const placeAlign = disk.DirectAlign

// placeFrame returns the buffer for a frame of n bytes whose first bytes
// are head (transport.FramePlacer), and the frame's place in it: where
// the first record set's payload starts on a multiple of placeAlign. A
// frame whose head does not say where (a compressed set, a bundle of
// heartbeats) is read from the buffer's start.
func placeFrame(head []byte, n int) (buf, frame []byte) {
	at, ok := transport.FirstSetAt(head)
	var p int
	if ok {
		p, ok = recordset.PayloadAt(head[at:])
	}
	if !ok || n > maxPooledFrame-placeAlign {
		buf = getFrame(n)
		return buf, buf
	}
	buf = getFrame(n + placeAlign)
	base := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	shift := (placeAlign - int((base+uintptr(at)+uintptr(p))%placeAlign)) % placeAlign
	return buf, buf[shift : shift+n : shift+n]
}

// retired is what the receiver let go of: frames that no record set held
// by the Former refers to any more, only groups handed to the applier up to
// group upTo.
type retired struct {
	upTo   uint64
	frames [][]byte
}

// frameLedger tracks received frames until nothing can read them.
//
// A frame's updates are read by the Former (record sets early or updates
// pending, across frames and connections of one primary process), by the
// group formed of them while it is journaled (under s.mu, in receive), and
// by the applier if that group is handed to it with its data (not while a
// resync holds the volumes, nor past the applier's queue while a Gate holds
// it: those groups are applied later from the journal, and OnApplied sees a
// group only while it is applied). So a frame is free once the Former has
// formed every record set it took from the frame into groups (or was
// replaced), those groups are journaled, and the applier has applied the
// last group handed to it with its data then (dataQueued): release records
// that point for each such frame, the applier recycles at it.
//
// Frame by frame, not once the Former holds nothing: while two subsystems
// write, the Former holds the set of one that waits for the other's of the
// same interval after nearly every frame, and frames then went to the
// collector and were made anew, each a huge-page buffer zeroed and faulted
// in (518 in a 15 s stream of 1 MiB writes to two subsystems, 7.9 page
// faults a MiB applied).
type frameLedger struct {
	open      []*ledgerFrame // received and not yet released; s.mu
	openBytes int            // the memory of their buffers (frameCost); s.mu

	mu       sync.Mutex
	applied  uint64 // the last group the applier applied (or skipped)
	waiting  []retired
	recycled uint64 // frames recycled so far
}

// ledgerFrame is a received frame in the ledger.
type ledgerFrame struct {
	buf  []byte
	cost int
	// former took the record sets with updates in sets from the frame
	// (nil: none); sets holds each subsystem's last.
	former *consistency.Former
	sets   []heldSet
}

type heldSet struct {
	subsystem string
	seq       uint64
}

// took records that former took rs from the frame. Called with s.mu held.
func (f *ledgerFrame) took(former *consistency.Former, rs *recordset.RecordSet) {
	if len(rs.Updates) == 0 {
		return // nothing of the frame to read
	}
	if f.former != former {
		f.former, f.sets = former, f.sets[:0]
	}
	for i := range f.sets {
		if f.sets[i].subsystem == rs.Subsystem {
			f.sets[i].seq = max(f.sets[i].seq, rs.Seq)
			return
		}
	}
	f.sets = append(f.sets, heldSet{rs.Subsystem, rs.Seq})
}

// readBy reports whether former, the receiver's Former, may still read the
// frame: it took a record set from it not yet wholly in a formed group. A
// Former replaced (a new primary process) dropped what it held.
func (f *ledgerFrame) readBy(former *consistency.Former) bool {
	if f.former == nil || f.former != former {
		return false
	}
	for _, h := range f.sets {
		if !former.Formed(h.subsystem, h.seq) {
			return true
		}
	}
	return false
}

// maxOpenBytes bounds the memory the ledger keeps for recycling while the
// Former holds the updates of the frames in it. A laggard subsystem can keep
// the Former holding another's updates for as long as it lags; the ledger
// would then keep every frame received meanwhile, none of which could be
// collected. Past the bound the ledger lets go of the oldest: the garbage
// collector frees each once nothing reads it, which is never too early.
const maxOpenBytes = 64 << 20

// frameCost is the memory a frame buffer of capacity c takes: a huge one
// is made with a huge page more, to align it (disk.DirectBufferBytes).
func frameCost(c int) int {
	if c >= hugeFrameMin {
		return disk.DirectBufferBytes(c)
	}
	return c
}

// add records a received frame, to be recycled once nothing reads it, and
// returns its entry, for the record sets the Former takes from it (took).
// Called with s.mu held.
func (l *frameLedger) add(frame []byte) *ledgerFrame {
	f := &ledgerFrame{buf: frame, cost: frameCost(cap(frame))}
	for len(l.open) > 0 && l.openBytes+f.cost > maxOpenBytes {
		l.openBytes -= l.open[0].cost
		l.open[0] = nil
		l.open = l.open[1:]
	}
	l.open = append(l.open, f)
	l.openBytes += f.cost
	return f
}

// release retires the open frames former reads no more, free once group
// upTo is applied. Called with s.mu held, when every group formed so far
// is journaled and handed to the applier at or before upTo.
func (l *frameLedger) release(former *consistency.Former, upTo uint64) {
	var frames [][]byte
	open := l.open[:0]
	for _, f := range l.open {
		if f.readBy(former) {
			open = append(open, f)
			continue
		}
		frames = append(frames, f.buf)
		l.openBytes -= f.cost
	}
	clear(l.open[len(open):])
	l.open = open
	if len(frames) == 0 {
		return
	}
	l.mu.Lock()
	if upTo > l.applied {
		l.waiting = append(l.waiting, retired{upTo: upTo, frames: frames})
		frames = nil
	}
	l.recycled += uint64(len(frames))
	l.mu.Unlock()
	for _, f := range frames {
		putFrame(f)
	}
}

// appliedThrough recycles what waited for group g. The applier calls it
// after each job; a job it skips (after a failure) counts too: nothing
// reads that group's frames any more either.
func (l *frameLedger) appliedThrough(g uint64) {
	l.mu.Lock()
	l.applied = g
	var free []retired
	for len(l.waiting) > 0 && l.waiting[0].upTo <= g {
		free = append(free, l.waiting[0])
		l.recycled += uint64(len(l.waiting[0].frames))
		l.waiting = l.waiting[1:]
	}
	l.mu.Unlock()
	for _, r := range free {
		for _, f := range r.frames {
			putFrame(f)
		}
	}
}
