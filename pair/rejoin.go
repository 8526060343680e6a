package pair

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"duplex/bitmap"
	"duplex/disk"
)

// SuspendedVolume is one pair of WriteSuspended: a volume, its subsystem's
// id, its size, and the regions changed since it was suspended.
type SuspendedVolume struct {
	Name, Subsystem string
	Size            int64
	Changed         *bitmap.Bitmap
}

// WriteSuspended writes, in a directory that holds no pair state yet, the
// pair state of a primary whose every pair is suspended since since, with
// each pair's changed regions, as a clean stop leaves it: what a promoted
// site's write path kept (package failover) becomes the pairs of the
// primary it runs as in the reverse direction. The secondary, the old
// primary, holds each volume as of since outside those regions; a resume
// copies them under the hold of every resync. The bitmaps are written
// first and the pair state last, atomically: a crash leaves no pair state,
// and the next attempt writes it all again.
func WriteSuspended(fsys disk.FS, dir string, since int64, vols []SuspendedVolume) error {
	fsys = disk.Or(fsys)
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pair state %s: %w", dir, err)
	}
	st := persisted{Clean: true}
	for _, v := range vols {
		bm := v.Changed
		if bm == nil {
			bm = bitmap.New(v.Size, bitmap.DefaultRegion)
		}
		data, err := bm.MarshalBinary()
		if err != nil {
			return fmt.Errorf("pair state of %s: %w", v.Name, err)
		}
		if err := disk.WriteFileAtomic(fsys, filepath.Join(dir, v.Name+".bitmap"), data); err != nil {
			return fmt.Errorf("pair state of %s: %w", v.Name, err)
		}
		st.Pairs = append(st.Pairs, &Pair{Volume: v.Name, Subsystem: v.Subsystem, State: Suspended, Size: v.Size,
			Consistent: since, Since: since, RejoinOwed: true})
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := disk.WriteFileAtomic(fsys, filepath.Join(dir, "pairs.json"), data); err != nil {
		return fmt.Errorf("pair state: %w", err)
	}
	return nil
}

// ErrRejoinOwed refuses the resume of a pair whose rejoin's regions are
// not added yet (see Pair.RejoinOwed).
var ErrRejoinOwed = errors.New("awaits the other site's rejoin")

func rejoinOwed(vol string) error {
	return fmt.Errorf("%s %w: the regions where the other site (the old primary) may hold writes this site never had, "+
		"or its whole image made anew, are not added to the pair yet, and resumed now it would go duplex over them; "+
		"the other site's `duplex rejoin --yes` resumes it. If that site is lost for good, check what its secondary copy "+
		"holds, then `duplex pair delete %s` and `duplex pair add %s` for a whole copy to the secondary",
		vol, ErrRejoinOwed, vol, vol)
}

// AddChanged adds the regions of extra (nil: none) to vol's changed
// regions if the pair is suspended, and returns once they are saved; a
// pair that is not suspended is left as it is, and added reports false. A
// rejoin adds the regions where the old primary may hold writes this site
// never had, so that the resume copies them too; the pair's resume is
// refused until then (RejoinOwed), so none is left suspended without them
// at the rejoin, and a repeated request finds it resumed.
func (mg *Manager) AddChanged(vol string, extra *bitmap.Bitmap) (added bool, err error) {
	mg.mu.Lock()
	p, err := mg.pair(vol)
	if err != nil {
		mg.unlock()
		return false, err
	}
	bm := mg.vols[vol].Subsystem.Tracking(vol)
	if p.Deleted || p.State != Suspended || bm == nil {
		if p.RejoinOwed {
			p.RejoinOwed = false
			mg.dirty = true
			mg.unlock()
			return false, mg.persist("add changed regions of", vol)
		}
		mg.unlock()
		return false, nil
	}
	if extra != nil && extra.Size() != bm.Size() {
		mg.unlock()
		return false, fmt.Errorf("%s: regions of a volume of %d bytes, not %d", vol, extra.Size(), bm.Size())
	}
	if extra != nil {
		for r, off, n, ok := extra.Next(0); ok; r, off, n, ok = extra.Next(r + 1) {
			bm.Set(off, n)
		}
	}
	p.RejoinOwed = false
	mg.dirty = true
	mg.unlock()
	return true, mg.persist("add changed regions of", vol)
}

// Changed returns a copy of the regions vol's secondary copy lacks: a
// suspended pair's changed regions, a pending pair's regions still to copy
// (all of them if unknown), none for a duplex pair.
func (mg *Manager) Changed(vol string) (*bitmap.Bitmap, error) {
	mg.mu.Lock()
	defer mg.unlock()
	p, err := mg.pair(vol)
	if err != nil {
		return nil, err
	}
	var bm *bitmap.Bitmap
	switch {
	case p.State == Suspended || p.Deleted:
		bm = mg.vols[vol].Subsystem.Tracking(vol)
	case p.State == Pending:
		bm = mg.copies[vol]
	default:
		return bitmap.New(p.Size, bitmap.DefaultRegion), nil
	}
	if bm == nil {
		bm = bitmap.New(p.Size, bitmap.DefaultRegion)
		bm.SetAll()
		return bm, nil
	}
	return bm.Clone(), nil
}
