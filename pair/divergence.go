package pair

import (
	"fmt"
	"path/filepath"

	"duplex/bitmap"
	"duplex/disk"
)

// Divergence is where a stopped primary's volume may differ from the last
// image its secondary applied: the regions of writes the secondary may
// never have journaled, or, when those cannot be known, the whole volume
// and why. A rejoin discards what the primary holds there.
type Divergence struct {
	Regions *bitmap.Bitmap // at bitmap.DefaultRegion granularity
	// Whole says why the whole volume is taken ("" when Regions are
	// known region by region).
	Whole string
}

// ReadDivergence reads, from the pair state in dir of a primary that is not
// running, each volume's Divergence, given the regions its activity log
// marks (logged, as actlog.ReadMarks returns them) or why the log could not
// be read (logErr). It follows what Open would do after that stop:
//
//   - a clean stop shipped everything captured to the secondary, which
//     journaled it: a duplex pair diverges nowhere, a suspended or copying
//     one in its bitmap (changes since the suspension, regions still to
//     copy);
//   - after an unclean stop the log's marks are added: writes the
//     secondary may not have journaled (those the sidefile held when the
//     process died among them);
//   - the whole volume where nothing says which regions: no pair (or one of
//     another size), a deleted pair, a first copy never completed, a copy
//     the secondary holds no consistent image of, a missing or unreadable
//     bitmap, an unclean stop of a run without an activity log, or a log
//     that cannot be read.
func ReadDivergence(fsys disk.FS, dir string, sizes map[string]int64, logged map[string][][2]int64, logErr error) (map[string]Divergence, error) {
	fsys = disk.Or(fsys)
	st, found, err := readPersisted(fsys, dir)
	if err != nil {
		return nil, err
	}
	noState := !found
	saved := map[string]*Pair{}
	for _, p := range st.Pairs {
		if p != nil {
			saved[p.Volume] = p
		}
	}
	out := map[string]Divergence{}
	for name, size := range sizes {
		bm := bitmap.New(size, bitmap.DefaultRegion)
		whole := func(why string) {
			bm.SetAll()
			out[name] = Divergence{Regions: bm, Whole: why}
		}
		p := saved[name]
		switch {
		case noState:
			whole("the primary has no pair state")
			continue
		case p == nil || p.Size != size:
			whole("no pair of this volume and size in the pair state")
			continue
		case p.Deleted:
			whole("the pair was deleted: writes since were tracked nowhere")
			continue
		case p.FirstCopy:
			whole("its first copy never completed")
			continue
		case p.Inconsistent:
			whole("the secondary held no consistent copy of it")
			continue
		case !st.Clean && st.NoLog:
			whole("the last run had no activity log and did not stop cleanly")
			continue
		case !st.Clean && logErr != nil:
			whole(fmt.Sprintf("the activity log cannot be read (%v) and the last stop was not clean", logErr))
			continue
		}
		if p.State == Suspended || p.State == Pending {
			data, err := disk.ReadFile(fsys, filepath.Join(dir, name+".bitmap"))
			if err != nil {
				whole(fmt.Sprintf("its bitmap cannot be read (%v)", err))
				continue
			}
			saved, err := bitmap.Decode(data, size)
			if err != nil {
				whole(fmt.Sprintf("its bitmap does not decode (%v)", err))
				continue
			}
			for r, off, n, ok := saved.Next(0); ok; r, off, n, ok = saved.Next(r + 1) {
				bm.Set(off, n)
			}
		}
		if !st.Clean {
			for _, rg := range logged[name] {
				bm.Set(rg[0], rg[1])
			}
		}
		out[name] = Divergence{Regions: bm}
	}
	return out, nil
}
