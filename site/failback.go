package site

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"duplex/apply"
	"duplex/bitmap"
	"duplex/config"
	"duplex/control"
	"duplex/disk"
	"duplex/failover"
	"duplex/pair"
	"duplex/secondary"
)

// The way back (package failover, "Fail back"): a switchover at the
// promoted site promotes the old primary, running as its secondary, in
// place. The old primary records that promotion as any secondary does
// (PromotedDir of the reversed config), and from then on it is the
// session's primary again in the session's own direction: its pair state
// (PairStateDir) is made anew from the promotion, every pair suspended as
// of the promotion's consistency time, so that `duplex primary` serves it,
// and the promoted site rejoins it as the secondary (RejoinBack) with only
// the regions written since copied across.

// failBack, at the start of the primary of cfg in its own pair-state
// directory dir, turns a promotion of this site in the reverse direction
// (the old primary, rejoined, promoted in place by a switchover at the
// other site) into this site's pair state, if that was not done yet, and
// returns the promotion the site serves since: nil for a site never
// promoted back. Each step is idempotent and rejoin.json goes last, so a
// kill -9 anywhere leaves a state the next start completes.
func failBack(cfg *config.Config, fsys disk.FS, dir string, log *slog.Logger) (*failover.Promotion, error) {
	fsys = disk.Or(fsys)
	promoted := ""
	if rev, err := cfg.Reversed(); err == nil {
		promoted = PromotedDir(rev)
	}
	switch r, err := readRejoin(fsys, dir); {
	case err == nil && promoted != "":
		pr, err := failover.ReadPromotion(fsys, promoted)
		if errors.Is(err, failover.ErrNotPromoted) {
			return nil, nil // still the promoted site's secondary: refused
		}
		if err != nil {
			return nil, err
		}
		if err := seedFailBack(cfg, fsys, dir, promoted, pr, r); err != nil {
			return nil, fmt.Errorf("taking the session back: %w", err)
		}
		log.Warn("took the session back by a switchover: this site is the primary again, every pair suspended until the other site rejoins",
			"consistency_time", pr.ConsistencyTime, "group", pr.Group, "generation", pr.Generation.String())
	case err != nil && !errors.Is(err, ErrNotRejoined):
		return nil, err
	}
	pr, err := failover.ReadPromotion(fsys, dir)
	if errors.Is(err, failover.ErrNotPromoted) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if promoted != "" {
		if err := retireReverseSecondary(cfg, promoted); err != nil {
			return nil, err
		}
	}
	return &pr, nil
}

// seedFailBack makes the pair state of a site promoted back (pr, recorded
// in promoted): every pair suspended as of the promotion's consistency
// time, with the regions written since the promotion (none, for a
// promotion in place), the data generation the promotion started, and the
// promotion itself; the state of the site's first life as the primary
// goes: its activity log's marks were copied over by the rejoin, and its
// switchover record is superseded. rejoin.json is removed last.
//
// Promoted by a failover back (PromoteBack: the other site lost in the
// middle of the rejoin's copy), the volumes may hold what the other site
// does not: the regions the rejoin r discarded, where a volume whose copy
// had not ended still holds this site's own image, and the regions of the
// groups journaled here and never applied (the copy's hold), which the
// other site wrote. Both are added to the changed regions, so that the
// other site's rejoin takes them from here. A promotion in place (a
// switchover) has neither: every copy ended, nothing held.
func seedFailBack(cfg *config.Config, fsys disk.FS, dir, promoted string, pr failover.Promotion, r Rejoined) error {
	sizes, vols, err := suspendedVolumes(cfg)
	if err != nil {
		return err
	}
	ch, err := failover.OpenChanges(fsys, promoted, sizes)
	if err != nil {
		return err
	}
	for i := range vols {
		vols[i].Changed = ch.Bitmap(vols[i].Name).Clone()
	}
	if err := ch.Close(); err != nil {
		return err
	}
	if rev, err := cfg.Reversed(); err == nil {
		if err := addUncopiedRegions(rev, pr, r, vols); err != nil {
			return err
		}
	}
	if err := fsys.Remove(filepath.Join(dir, "activity.log")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := pair.WriteSuspended(fsys, dir, pr.ConsistencyTime, vols); err != nil {
		return err
	}
	b, _ := json.Marshal(generationFile{Generation: pr.Generation})
	if err := disk.WriteFileAtomic(fsys, filepath.Join(dir, "generation.json"), append(b, '\n')); err != nil {
		return fmt.Errorf("data generation: %w", err)
	}
	if err := failover.WritePromotion(fsys, dir, pr); err != nil {
		return err
	}
	if err := failover.RemoveSwitchover(fsys, dir); err != nil {
		return err
	}
	if err := fsys.Remove(filepath.Join(dir, rejoinFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rejoin: %w", err)
	}
	return fsys.SyncDir(dir)
}

// retireReverseSecondary removes what the site kept as the secondary of
// the reverse direction once it is the primary again: the promotion record
// of that role, whose copy the pair state holds, and the journal's
// segments, every group of which is applied. A later rejoin starts that
// role afresh.
func retireReverseSecondary(cfg *config.Config, promoted string) error {
	if err := os.RemoveAll(promoted); err != nil {
		return fmt.Errorf("the reverse direction's promotion record: %w", err)
	}
	if rev, err := cfg.Reversed(); err == nil {
		// Its promotion is recorded: the marker of it under way is spent.
		if err := removeInPlacePromotion(nil, rev); err != nil {
			return err
		}
	}
	segs, _ := filepath.Glob(filepath.Join(cfg.Primary.Journal, "*.seg"))
	for _, s := range segs {
		if err := os.Remove(s); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the reverse direction's journal: %w", err)
		}
	}
	return nil
}

// PromotedBack reports whether the old primary of cfg, rejoined, was
// promoted back by a switchover at the other site: it is the session's
// primary again, and `duplex primary` serves it. A record of that
// promotion that is damaged or cannot be read is an error: read as "no",
// the site would run as the secondary of a site that handed it the
// session.
func PromotedBack(cfg *config.Config) (bool, error) {
	rev, err := cfg.Reversed()
	if err != nil {
		return false, nil
	}
	switch _, err = failover.ReadPromotion(nil, PromotedDir(rev)); {
	case errors.Is(err, failover.ErrNotPromoted):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("rejoin: whether the other site handed the session back: %w", err)
	}
	return true, nil
}

// addUncopiedRegions adds to vols, at the old primary promoted back whose
// secondary state (of rev) is there still, the regions where its volumes
// may differ from the other site's: see seedFailBack.
func addUncopiedRegions(rev *config.Config, pr failover.Promotion, r Rejoined, vols []pair.SuspendedVolume) error {
	st, err := apply.ReadState(StatePath(rev))
	if err != nil {
		return fmt.Errorf("the state of this site as the other's secondary: %w", err)
	}
	for _, v := range vols {
		vs, ok := st.Volumes[v.Name]
		if ok && vs.State == secondary.StateDuplex && !vs.Inconsistent {
			continue // copied: the other site's image, and its writes since
		}
		enc, ok := r.Discarded[v.Name]
		if !ok {
			v.Changed.SetAll()
			continue
		}
		d, err := bitmap.Decode(enc, v.Changed.Size())
		if err != nil {
			return fmt.Errorf("the rejoin's discarded regions of %s: %w", v.Name, err)
		}
		for i, off, n, ok := d.Next(0); ok; i, off, n, ok = d.Next(i + 1) {
			v.Changed.Set(off, n)
		}
	}
	if pr.HeldGroups > 0 {
		return addHeldRegions(rev, pr, vols)
	}
	return nil
}

// PromoteBack fails over back: at the old primary of cfg that rejoined the
// promoted site as its secondary, once that site is lost, it promotes this
// site's secondary (of the reversed config) as Promote does, so that a
// start of the primary of cfg (OpenPrimary) serves the session from here
// again, every pair suspended with the regions the other site's rejoin
// takes back (seedFailBack). Promoted already, the record is returned,
// fresh false.
func PromoteBack(ctx context.Context, cfg *config.Config, log *slog.Logger) (pr failover.Promotion, fresh bool, recovered control.Status, err error) {
	if _, err := ReadRejoin(cfg); err != nil {
		return pr, false, control.Status{}, fmt.Errorf("this site did not rejoin the promoted site: %w", err)
	}
	rev, err := cfg.Reversed()
	if err != nil {
		return pr, false, control.Status{}, err
	}
	return Promote(ctx, rev, log, nil)
}
