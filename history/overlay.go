package history

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"unsafe"
)

// Overlay holds, for one volume, the content some ranges had at a past
// group: laid over the volume's current content, it reads the volume as of
// that group. Ranges are added newest group last, and the first image of a
// byte added is kept: the one of the oldest group after the past one that
// wrote it, as Undo does. It is not safe for concurrent use.
//
// An Overlay made by NewSpilledOverlay keeps the data of its images in a
// Scratch file and only its index in memory, so that what it can hold is
// bounded by the disk (the Scratch's limit), not by memory.
type Overlay struct {
	idx   segIndex
	bytes int64 // image data held in memory
	spill *Scratch
	// spilled is the image data written to spill.
	spilled int64
	// moved counts the segments insertions moved: what makes insertion
	// cheap or not, whatever the machine's load (tests).
	moved int
}

// NewSpilledOverlay is an Overlay whose images' data goes to sc (nil: an
// Overlay in memory).
func NewSpilledOverlay(sc *Scratch) *Overlay { return &Overlay{spill: sc} }

type overlaySeg struct {
	start, end uint64
	data       []byte // held in memory; nil: zeros, or spilled
	at         int64  // 1 + the image's offset in the Scratch; 0: not spilled
}

// Add lays e under what the Overlay holds: only the bytes it holds no image
// of yet are taken. e.Data is kept when it is taken whole; parts of it are
// copied, so that a few bytes taken never keep a whole image alive and
// Bytes is what the Overlay holds in memory. A spilled Overlay writes the
// bytes taken to its Scratch; if that fails (ErrScratchFull, or the disk's
// error) the Overlay may lack part of e and must not be read again.
func (o *Overlay) Add(e Extent) error { return o.add(e, true) }

// add is Add; with own false, e.Data is part of a larger buffer (a history
// record) and is copied even when taken whole, so that the Overlay never
// keeps the rest of the buffer alive.
func (o *Overlay) add(e Extent, own bool) error {
	for _, g := range o.gaps(e.Offset, e.Offset+e.Length) {
		seg := overlaySeg{start: g.start, end: g.end}
		if !e.Zeros {
			data := e.Data[g.start-e.Offset : g.end-e.Offset : g.end-e.Offset]
			if o.spill != nil {
				at, err := o.spill.Append(data)
				if err != nil {
					return err
				}
				seg.at = at + 1
				o.spilled += int64(len(data))
			} else {
				if !own || uint64(len(data)) < e.Length {
					data = bytes.Clone(data)
				}
				seg.data = data
				o.bytes += int64(len(data))
			}
		}
		o.put(seg)
	}
	return nil
}

// put inserts seg, over bytes the Overlay holds no image of.
func (o *Overlay) put(seg overlaySeg) {
	c, i := o.idx.seek(seg.start)
	if pc, pi, ok := o.idx.prev(c, i); ok {
		p := &o.idx.chunks[pc][pi]
		if p.end == seg.start && seg.data == nil && p.data == nil &&
			(seg.at == 0 && p.at == 0 || seg.at != 0 && p.at != 0 && p.at+int64(p.end-p.start) == seg.at) {
			// Zeros next to zeros (a file system filling fresh space
			// in order), or an image spilled right after its
			// neighbour's: one segment.
			p.end = seg.end
			return
		}
	}
	o.moved += o.idx.insert(c, i, seg)
}

// Under lays the images n holds under o's, as Add would, n's images being
// of later groups than o's: a read view of a past point reads the
// history's undo after the point (o) while the groups applied meanwhile
// have their before images kept (n), and the oldest image of a byte wins.
// n's data is taken where it is, its spilled images not written again, so
// both must spill to the same Scratch or neither; parts of an image are
// copied, so that o holds what Bytes counts. n must not be used after.
func (o *Overlay) Under(n *Overlay) error {
	if o.spill != n.spill {
		return fmt.Errorf("history: overlays laid one under the other spill to different scratch files")
	}
	for _, ch := range n.idx.chunks {
		for _, s := range ch {
			for _, g := range o.gaps(s.start, s.end) {
				seg := overlaySeg{start: g.start, end: g.end}
				from, ln := g.start-s.start, g.end-g.start
				switch {
				case s.at != 0:
					seg.at = s.at + int64(from)
					o.spilled += int64(ln)
				case s.data != nil:
					seg.data = s.data[from : from+ln : from+ln]
					if ln < uint64(len(s.data)) {
						seg.data = bytes.Clone(seg.data)
					}
					o.bytes += int64(ln)
				}
				o.put(seg)
			}
		}
	}
	return nil
}

// Missing is the number of disjoint parts of [off, off+length) the
// Overlay holds no image of: what Add would take of an extent there.
func (o *Overlay) Missing(off, length uint64) int { return len(o.gaps(off, off+length)) }

// IndexGrowth is the most an Add taking parts disjoint parts can grow a
// spilled Overlay's Bytes by: a segment each, and the chunk its insertion
// may split off. A caller bounding the index asks it before the Add.
func IndexGrowth(parts int) int64 { return int64(parts) * (segChunk*segSize + chunkSize) }

// WriteOver writes p over the images the Overlay holds of [off,
// off+len(p)), where its Scratch keeps them: the newest content wins, as
// a failover drill's writes do; the bytes it holds no image of are left
// to Add. Only spilled images are written: one in memory may be the buffer
// Add was given, and one of zeros has no data to write over.
func (o *Overlay) WriteOver(p []byte, off int64) error {
	start := uint64(off)
	return o.within(start, start+uint64(len(p)), func(s *overlaySeg, a, b uint64) error {
		if s.at == 0 {
			return fmt.Errorf("history: the image of [%d, %d) is not in a scratch file: it cannot be written over", s.start, s.end)
		}
		return o.spill.WriteAt(p[a-start:b-start], s.at-1+int64(a-s.start))
	})
}

// within calls fn with each segment that holds part of [start, end), and
// that part, [a, b), in order, until fn fails.
func (o *Overlay) within(start, end uint64, fn func(s *overlaySeg, a, b uint64) error) error {
	for c, i := o.idx.seek(start); c < len(o.idx.chunks); c, i = o.idx.next(c, i) {
		s := &o.idx.chunks[c][i]
		if s.start >= end {
			break
		}
		if err := fn(s, max(s.start, start), min(s.end, end)); err != nil {
			return err
		}
	}
	return nil
}

// gaps are the parts of [start, end) the Overlay holds no image of.
func (o *Overlay) gaps(start, end uint64) []span {
	if start >= end {
		return nil
	}
	var gaps []span
	cur := start
	for c, i := o.idx.seek(start); c < len(o.idx.chunks); c, i = o.idx.next(c, i) {
		s := &o.idx.chunks[c][i]
		if s.start >= end {
			break
		}
		if s.start > cur {
			gaps = append(gaps, span{cur, s.start})
		}
		cur = max(cur, s.end)
	}
	if cur < end {
		gaps = append(gaps, span{cur, end})
	}
	return gaps
}

// Bytes is the memory the Overlay holds: the data of its images, and its
// index of them, which images of zeros (no data) take too, so that a view
// bounded by Bytes is bounded however many of them it keeps. A spilled
// Overlay's data is on disk (Spilled), so Bytes is its index alone.
func (o *Overlay) Bytes() int64 {
	return o.bytes + o.idx.bytes
}

// Spilled is the data of the images the Overlay wrote to its Scratch.
func (o *Overlay) Spilled() int64 { return o.spilled }

// ReadOver replaces, in p (the current content at off), every byte the
// Overlay holds an image of. It fails only reading a spilled image back.
func (o *Overlay) ReadOver(p []byte, off int64) error {
	start := uint64(off)
	return o.within(start, start+uint64(len(p)), func(s *overlaySeg, a, b uint64) error {
		dst := p[a-start : b-start]
		switch {
		case s.at != 0:
			return o.spill.ReadAt(dst, s.at-1+int64(a-s.start))
		case s.data == nil:
			clear(dst)
		default:
			copy(dst, s.data[a-s.start:b-s.start])
		}
		return nil
	})
}

// segChunk is the most segments one chunk of a segIndex holds: an
// insertion moves at most that many, and the chunks' index one slot per
// chunk.
const segChunk = 128

// segIndex holds disjoint segments sorted by start (and so by end) in
// chunks of at most segChunk: an insertion anywhere moves at most a chunk's
// segments, where one sorted slice would move every segment after it (a
// view of a volume written in no order took quadratic time). Each chunk is
// allocated at its full size, so bytes is what the index holds.
type segIndex struct {
	chunks [][]overlaySeg // none empty
	bytes  int64
}

const (
	segSize   = int64(unsafe.Sizeof(overlaySeg{}))
	chunkSize = int64(unsafe.Sizeof([]overlaySeg{}))
)

// seek is the position of the first segment whose end is after x: chunk
// len(chunks) if there is none.
func (ix *segIndex) seek(x uint64) (int, int) {
	c := sort.Search(len(ix.chunks), func(k int) bool { ch := ix.chunks[k]; return ch[len(ch)-1].end > x })
	if c == len(ix.chunks) {
		return c, 0
	}
	ch := ix.chunks[c]
	return c, sort.Search(len(ch), func(k int) bool { return ch[k].end > x })
}

func (ix *segIndex) next(c, i int) (int, int) {
	if i+1 < len(ix.chunks[c]) {
		return c, i + 1
	}
	return c + 1, 0
}

// prev is the position before (c, i), if there is one.
func (ix *segIndex) prev(c, i int) (int, int, bool) {
	if i > 0 {
		return c, i - 1, true
	}
	if c == 0 {
		return 0, 0, false
	}
	return c - 1, len(ix.chunks[c-1]) - 1, true
}

// insert puts s at position (c, i), before the segment there, and returns
// the number of segments it moved.
func (ix *segIndex) insert(c, i int, s overlaySeg) int {
	if c == len(ix.chunks) {
		// After every segment: at the end of the last chunk.
		if c == 0 || len(ix.chunks[c-1]) == segChunk {
			ix.chunks = append(ix.chunks, ix.newChunk())
			ix.bytes += chunkSize // the chunks' index, one slot (amortized)
		}
		c = len(ix.chunks) - 1
		i = len(ix.chunks[c])
	}
	moved := 0
	if len(ix.chunks[c]) == segChunk {
		// Full: split in two halves, then insert in the one i falls in.
		half := ix.newChunk()
		half = append(half, ix.chunks[c][segChunk/2:]...)
		clear(ix.chunks[c][segChunk/2:])
		ix.chunks[c] = ix.chunks[c][:segChunk/2]
		ix.chunks = append(ix.chunks, nil)
		moved += copy(ix.chunks[c+2:], ix.chunks[c+1:]) + segChunk/2
		ix.chunks[c+1] = half
		ix.bytes += chunkSize
		if i > segChunk/2 {
			c, i = c+1, i-segChunk/2
		}
	}
	ch := append(ix.chunks[c], overlaySeg{})
	moved += copy(ch[i+1:], ch[i:])
	ch[i] = s
	ix.chunks[c] = ch
	return moved
}

func (ix *segIndex) newChunk() []overlaySeg {
	ix.bytes += segChunk * segSize
	return make([]overlaySeg, 0, segChunk)
}

// readSegs replaces, in p (the content at off), every byte segs hold, data
// or zeros.
func readSegs(segs []overlaySeg, p []byte, off int64) {
	start, end := uint64(off), uint64(off)+uint64(len(p))
	i := sort.Search(len(segs), func(i int) bool { return segs[i].end > start })
	for ; i < len(segs) && segs[i].start < end; i++ {
		s := segs[i]
		a, b := max(s.start, start), min(s.end, end)
		dst := p[a-start : b-start]
		if s.data == nil {
			clear(dst)
		} else {
			copy(dst, s.data[a-s.start:b-s.start])
		}
	}
}

// layer is what a sequence of writes leaves on one volume, the last write
// of a byte winning: the before images of a group's later steps read
// through it where its earlier steps wrote. It keeps the writes' data
// without copying it.
type layer struct{ segs []overlaySeg }

// put lays e over what the layer holds.
func (l *layer) put(e Extent) {
	start, end := e.Offset, e.Offset+e.Length
	if start >= end {
		return
	}
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].end > start })
	j := i
	var repl []overlaySeg
	if i < len(l.segs) && l.segs[i].start < start {
		s := l.segs[i]
		left := overlaySeg{start: s.start, end: start}
		if s.data != nil {
			left.data = s.data[:start-s.start]
		}
		repl = append(repl, left)
	}
	for j < len(l.segs) && l.segs[j].start < end {
		j++
	}
	seg := overlaySeg{start: start, end: end}
	if !e.Zeros {
		seg.data = e.Data[:e.Length:e.Length]
	}
	repl = append(repl, seg)
	if j > i && l.segs[j-1].end > end {
		s := l.segs[j-1]
		right := overlaySeg{start: end, end: s.end}
		if s.data != nil {
			right.data = s.data[end-s.start:]
		}
		repl = append(repl, right)
	}
	l.segs = slices.Replace(l.segs, i, j, repl...)
}

// overlaps reports whether the layer holds a byte of [off, off+n).
func (l *layer) overlaps(off, n int64) bool {
	start, end := uint64(off), uint64(off)+uint64(n)
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].end > start })
	return i < len(l.segs) && l.segs[i].start < end
}

// layered reads a volume as a group's earlier steps left it.
type layered struct {
	src Source
	l   *layer
}

func (x layered) ReadAt(p []byte, off int64) error {
	if err := x.src.ReadAt(p, off); err != nil {
		return err
	}
	readSegs(x.l.segs, p, off)
	return nil
}

func (x layered) IsHole(off, length int64) (bool, error) {
	if x.l.overlaps(off, length) {
		return false, nil
	}
	if h, ok := x.src.(holer); ok {
		return h.IsHole(off, length)
	}
	return false, nil
}

// ReadBeforeImages reads the current content of ranges (merged first) from
// srcs, as Capture does: the images an Overlay of the current group takes
// before the next group is applied.
func ReadBeforeImages(ranges []Range, srcs map[string]Source) ([]Extent, error) {
	var out []Extent
	err := EachBeforeImage(ranges, srcs, func(e Extent) bool {
		out = append(out, e)
		return true
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EachBeforeImage is ReadBeforeImages one extent (of a MiB at most) at a
// time: fn takes each as it is read and says whether to read on, so a
// caller that bounds what it keeps never holds more than one extent past
// its bound.
func EachBeforeImage(ranges []Range, srcs map[string]Source, fn func(Extent) bool) error {
	for _, rg := range mergeRanges(ranges) {
		src, ok := srcs[rg.Volume]
		if !ok {
			return fmt.Errorf("history: no volume %q", rg.Volume)
		}
		for off, end := rg.Offset, rg.Offset+rg.Length; off < end; {
			n := min(end-off, readChunk)
			e, err := readExtent(src, rg.Volume, off, n)
			if err != nil {
				return err
			}
			if !fn(e) {
				return nil
			}
			off += n
		}
	}
	return nil
}
