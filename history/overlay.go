package history

import (
	"bytes"
	"fmt"
	"sort"
	"unsafe"
)

// Overlay holds, for one volume, the content some ranges had at a past
// group: laid over the volume's current content, it reads the volume as of
// that group. Ranges are added newest group last, and the first image of a
// byte added is kept: the one of the oldest group after the past one that
// wrote it, as Undo does. It is not safe for concurrent use.
type Overlay struct {
	segs  []overlaySeg // sorted by start, disjoint
	cover spans
	bytes int64
	// moved counts the segments insertions moved: what makes insertion
	// cheap or not, whatever the machine's load (tests).
	moved int
}

type overlaySeg struct {
	start, end uint64
	data       []byte // nil: zeros
}

// Add lays e under what the Overlay holds: only the bytes it holds no image
// of yet are taken. e.Data is kept when it is taken whole; parts of it are
// copied, so that a few bytes taken never keep a whole image alive and
// Bytes is what the Overlay holds in memory.
func (o *Overlay) Add(e Extent) {
	for _, g := range o.cover.add(e.Offset, e.Offset+e.Length) {
		seg := overlaySeg{start: g.start, end: g.end}
		if !e.Zeros {
			seg.data = e.Data[g.start-e.Offset : g.end-e.Offset : g.end-e.Offset]
			if uint64(len(seg.data)) < e.Length {
				seg.data = bytes.Clone(seg.data)
			}
			o.bytes += int64(len(seg.data))
		}
		i := sort.Search(len(o.segs), func(i int) bool { return o.segs[i].start >= seg.start })
		if seg.data == nil && i > 0 && o.segs[i-1].data == nil && o.segs[i-1].end == seg.start {
			// Zeros next to zeros (a file system filling fresh space in
			// order): one segment.
			o.segs[i-1].end = seg.end
			continue
		}
		o.segs = append(o.segs, overlaySeg{})
		o.moved += copy(o.segs[i+1:], o.segs[i:])
		o.segs[i] = seg
	}
}

// Bytes is the memory the Overlay holds: the data of its images, and its
// index of them, which images of zeros (no data) take too, so that a view
// bounded by Bytes is bounded however many of them it keeps.
func (o *Overlay) Bytes() int64 {
	return o.bytes + int64(cap(o.segs))*int64(unsafe.Sizeof(overlaySeg{})) + int64(cap(o.cover.s))*int64(unsafe.Sizeof(span{}))
}

// ReadOver replaces, in p (the current content at off), every byte the
// Overlay holds an image of.
func (o *Overlay) ReadOver(p []byte, off int64) {
	start, end := uint64(off), uint64(off)+uint64(len(p))
	i := sort.Search(len(o.segs), func(i int) bool { return o.segs[i].end > start })
	for ; i < len(o.segs) && o.segs[i].start < end; i++ {
		s := o.segs[i]
		a, b := max(s.start, start), min(s.end, end)
		dst := p[a-start : b-start]
		if s.data == nil {
			clear(dst)
		} else {
			copy(dst, s.data[a-s.start:b-s.start])
		}
	}
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
