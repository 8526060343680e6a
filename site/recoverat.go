package site

import (
	"fmt"

	"duplex/apply"
	"duplex/failover"
)

// RecoverTo takes the stopped secondary's volumes back to the newest group
// at or before t (secondary.RecoverTo). First the regions the undo writes
// back, and those of the groups journaled and held unapplied by a resync
// that it drops, are added, durably, to the changed regions a promotion of
// this site starts from (PromotedDir): the old primary holds writes there
// that this site then no longer has (its activity log let the held groups'
// regions go once they were journaled here, and the promotion records no
// held groups after the recovery), and a rejoin after the promotion copies those
// regions back to it with the ones the promoted site writes. Run again
// after a crash, it marks the same regions or, once the undo was recorded,
// none more: they were marked before it.
func (s *Secondary) RecoverTo(t int64) (apply.State, error) {
	rs, err := s.sec.UndoRanges(t)
	if err != nil {
		return apply.State{}, err
	}
	if len(rs) > 0 {
		sizes := map[string]int64{}
		for n, v := range s.vols {
			sizes[n] = v.Size()
		}
		ch, err := failover.OpenChanges(s.fsys, PromotedDir(s.cfg), sizes)
		if err != nil {
			return apply.State{}, fmt.Errorf("recover --at: the regions to undo: %w", err)
		}
		for _, r := range rs {
			if bm := ch.Bitmap(r.Volume); bm != nil {
				bm.Set(int64(r.Offset), int64(r.Length))
			}
		}
		if err := ch.Close(); err != nil {
			return apply.State{}, fmt.Errorf("recover --at: the regions to undo: %w", err)
		}
	}
	return s.sec.RecoverTo(t)
}
