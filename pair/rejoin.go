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
	st := persisted{Clean: true, RejoinOwedKept: true}
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

// owedBeforeKept sets RejoinOwed on the pairs of ps, read from a state
// saved by a version that kept none, that are still as WriteSuspended
// made them suspended as of since: never resumed, never suspended again,
// nothing copied. The old primary's request resumes every pair it finds
// suspended, so such a pair most likely never had it (unless the resume
// that followed the request was refused, for the old primary's journal
// room: its regions were added then, and the request asked again, as the
// refusal says, adds nothing more and resumes it). A pair the request
// resumed carries what it did: a copy's bytes or end, a later suspension's
// time, the session's own suspension (Auto).
func (mg *Manager) owedBeforeKept(ps []*Pair, since int64) {
	var owed []string
	for _, p := range ps {
		if p == nil || p.RejoinOwed || p.State != Suspended || p.Deleted || p.Auto || p.Reason != "" || p.Since != since ||
			p.CopyTotal != 0 || p.Copied != 0 || p.CopyEnd != 0 || p.Resynced != 0 || p.FirstCopy || p.Inconsistent || p.EndAt != 0 {
			continue
		}
		p.RejoinOwed, p.RejoinOwedGuessed = true, true
		owed = append(owed, p.Volume)
	}
	if len(owed) > 0 {
		mg.log.Warn("pair state saved by an earlier version, which kept no record of the old primary's rejoin request: "+
			"the pairs still suspended as of the promotion, as they were made for the rejoin, await its request "+
			"(its duplex rejoin --yes resumes them; a resume here is refused until then)", "volumes", owed)
	}
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
	// Owed nothing more, with nothing added: a deleted pair's add copies
	// the whole volume, and so does the resume of a suspended one without
	// a bitmap (saveResuming, startCopy), which only a resume's own
	// critical section leaves so. A pair not suspended was resumed by
	// the request before, its regions added then.
	if p.Deleted || p.State != Suspended || bm == nil {
		if p.RejoinOwed {
			p.RejoinOwed, p.RejoinOwedGuessed = false, false
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
	p.RejoinOwed, p.RejoinOwedGuessed = false, false
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
