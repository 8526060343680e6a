package site

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"duplex/actlog"
	"duplex/apply"
	"duplex/bitmap"
	"duplex/config"
	"duplex/control"
	"duplex/disk"
	"duplex/failover"
	"duplex/pair"
	"duplex/secondary"
	"duplex/transport"
	"duplex/volume"
)

// RejoinBackDir is where a promoted site that handed the session back by a
// switchover keeps its rejoin record once it rejoins the old primary as
// the session's secondary again: beside its journal, with state.json.
func RejoinBackDir(cfg *config.Config) string { return filepath.Dir(StatePath(cfg)) }

// ReadRejoinBack returns the rejoin recorded at a promoted site of cfg that
// rejoined the old primary as its secondary again.
func ReadRejoinBack(cfg *config.Config) (Rejoined, error) {
	return readRejoin(nil, RejoinBackDir(cfg))
}

// ReverseSwitchover returns the switchover recorded at the promoted site of
// cfg running as the primary of the reverse direction: the session handed
// back to the old primary, or on its way there.
func ReverseSwitchover(cfg *config.Config) (failover.Switchover, error) {
	return failover.ReadSwitchover(nil, ReverseDir(cfg))
}

// PlanRejoinBack computes, at the stopped promoted site of cfg that the old
// primary (whose changes are ch) took the session back from, what
// rejoining it as the session's secondary copies: the regions the old
// primary wrote since it took the session back. After a switchover nothing
// here is discarded: the switchover ended only once the old primary held
// every write acknowledged here, and writes were refused from then on.
// After a failover back (PromoteBack, with this site lost) the regions
// this site may hold writes of that the old primary never had are added,
// and discarded, as a rejoin of the old primary discards its own
// (PlanRejoin): this site's pair state as the primary of the reverse
// direction and its activity log say which.
func PlanRejoinBack(cfg *config.Config, ch control.Changes) ([]RejoinVolume, error) {
	rev, err := cfg.Reversed()
	if err != nil {
		return nil, fmt.Errorf("rejoin: %w", err)
	}
	if err := refuseWhileLeaveOwed(cfg, ch); err != nil {
		return nil, err
	}
	dir := ReverseDir(cfg)
	lock, err := disk.Or(nil).Lock(filepath.Join(dir, stateLockName))
	if err != nil {
		return nil, fmt.Errorf("rejoin: pair-state directory %s is in use (stop duplex promote here first): %w", dir, err)
	}
	defer lock.Close()
	sw, err := failover.ReadSwitchover(nil, dir)
	failedOver := false
	switch {
	case errors.Is(err, failover.ErrNoSwitchover):
		// The old primary took the session back by a failover (PromoteBack)
		// while this site was down: what this site wrote since the time
		// the old primary holds is discarded, as at any rejoin.
		failedOver = true
	case err != nil:
		return nil, fmt.Errorf("rejoin: %w", err)
	case sw.State != failover.SwitchoverDone:
		return nil, fmt.Errorf("rejoin: this site stopped in the middle of a switchover (begun %s): duplex status --config FILE says whether "+
			"the old primary took over; if it shows promoted_at, run duplex rejoin here again once %s is removed, else remove it and run duplex promote",
			control.FormatTime(sw.At), filepath.Join(dir, failover.SwitchoverFile))
	}
	gen, err := readGeneration(dir, promotionIn(PromotedDir(cfg)))
	switch {
	case errors.Is(err, disk.ErrDamaged):
		return nil, fmt.Errorf("rejoin: %w", err)
	case err != nil:
		return nil, fmt.Errorf("rejoin: this site's data generation: %w", err)
	}
	if gen.String() != ch.Follows {
		if failedOver {
			return nil, errors.New("rejoin: this promoted site did not hand the session back, and the other site did not take it over " +
				"from this one: duplex switchover here hands it back, or duplex rejoin at the old primary follows this site")
		}
		return nil, fmt.Errorf("rejoin: this site holds data generation %s, but the other site's generation followed %s: "+
			"it did not take the session over from this one", gen, ch.Follows)
	}
	var div map[string]pair.Divergence
	if failedOver {
		sizes := map[string]int64{}
		for _, sc := range rev.Primary.Subsystems {
			for _, vc := range sc.Volumes {
				if sizes[vc.Name], err = volumeSize(vc.Path, int64(vc.Size)); err != nil {
					return nil, fmt.Errorf("rejoin: %w", err)
				}
			}
		}
		marks, logErr := actlog.ReadMarks(nil, filepath.Join(dir, "activity.log"))
		if div, err = pair.ReadDivergence(nil, dir, sizes, marks, logErr); err != nil {
			return nil, fmt.Errorf("rejoin: %w", err)
		}
	}
	var plan []RejoinVolume
	for _, sc := range rev.Primary.Subsystems {
		for _, vc := range sc.Volumes {
			enc, ok := ch.Volumes[vc.Name]
			if !ok {
				return nil, fmt.Errorf("rejoin: the other site does not report volume %s", vc.Name)
			}
			size, err := volumeSize(vc.Path, int64(vc.Size))
			if err != nil {
				return nil, fmt.Errorf("rejoin: %w", err)
			}
			there, err := bitmap.Decode(enc, size)
			if err != nil {
				return nil, fmt.Errorf("rejoin: the other site's changed regions of %s: %w", vc.Name, err)
			}
			rv := RejoinVolume{Name: vc.Name, Size: size, There: there.DirtyBytes(), Discard: bitmap.New(size, there.Region()), Union: there}
			if d, ok := div[vc.Name]; ok {
				rv.Here, rv.Whole, rv.Discard, rv.Union = d.Regions.DirtyBytes(), d.Whole, d.Regions.Clone(), d.Regions.Clone()
				for r, off, n, ok := there.Next(0); ok; r, off, n, ok = there.Next(r + 1) {
					rv.Union.Set(off, n)
				}
			}
			if err := copyWholeIfGone(&rv, vc.Path); err != nil {
				return nil, fmt.Errorf("rejoin: %w", err)
			}
			rv.Copy = rv.Union.DirtyBytes()
			plan = append(plan, rv)
		}
	}
	return plan, nil
}

// BeginRejoinBack makes the stopped promoted site of cfg the secondary of
// the session again, following the old primary that took the session back
// (ch), as plan (PlanRejoinBack) says: its old journal's segments go (every
// group in them was applied before the promotion), its secondary state is
// seeded (every volume suspended as of the other site's promotion, that
// site's generation followed), the rejoin is recorded, and the promotion
// retired (RetireRejoinedBack): from then on the site is a secondary like
// any, the regions the other site wrote since copied over by its resume.
func BeginRejoinBack(cfg *config.Config, ch control.Changes, plan []RejoinVolume) (Rejoined, error) {
	dir := ReverseDir(cfg)
	lock, err := disk.Or(nil).Lock(filepath.Join(dir, stateLockName))
	if err != nil {
		return Rejoined{}, fmt.Errorf("rejoin: pair-state directory %s is in use (stop duplex promote here first): %w", dir, err)
	}
	defer lock.Close()
	var gen transport.Generation
	if err := gen.UnmarshalText([]byte(ch.Generation)); err != nil || gen == 0 {
		return Rejoined{}, fmt.Errorf("rejoin: the other site's data generation %q: %v", ch.Generation, err)
	}
	segs, _ := filepath.Glob(filepath.Join(cfg.Secondary.Journal, "*.seg"))
	for _, s := range segs {
		if err := os.Remove(s); err != nil {
			return Rejoined{}, fmt.Errorf("rejoin: the journal of this site's time as the secondary: %w", err)
		}
	}
	r := Rejoined{Session: cfg.Session, At: time.Now().UnixNano(), PromotedAt: ch.PromotedAt, ConsistencyTime: ch.ConsistencyTime,
		Generation: ch.Generation, Discarded: map[string][]byte{}, dir: RejoinBackDir(cfg)}
	st := apply.State{Session: cfg.Session, Time: ch.ConsistencyTime, Volumes: map[string]apply.VolumeState{}}
	for _, v := range plan {
		st.Volumes[v.Name] = apply.VolumeState{State: secondary.StateSuspended, Since: ch.ConsistencyTime}
		if v.Whole != "" {
			// Nothing says which regions differ: no image the other site
			// ever had until its copy ends.
			st.Volumes[v.Name] = apply.VolumeState{State: secondary.StateSuspended, Inconsistent: true}
		}
		if v.Gone {
			r.Gone = append(r.Gone, v.Name)
		}
		b, err := v.Discard.MarshalBinary()
		if err != nil {
			return Rejoined{}, fmt.Errorf("rejoin: %w", err)
		}
		r.Discarded[v.Name] = b
	}
	if err := secondary.Seed(nil, StatePath(cfg), st, gen); err != nil {
		return Rejoined{}, fmt.Errorf("rejoin: %w", err)
	}
	if err := oweJoin(cfg, cfg); err != nil {
		return Rejoined{}, err
	}
	// A promotion in place of this site's time as the secondary is
	// recorded: the marker of it under way, if left, is spent.
	if err := removeInPlacePromotion(nil, cfg); err != nil {
		return Rejoined{}, fmt.Errorf("rejoin: %w", err)
	}
	if err := writeRejoin(cfg, r); err != nil {
		return Rejoined{}, err
	}
	return r, nil
}

// RetireRejoinedBack removes the promotion of a site that rejoined back
// (its record, changed regions and reverse pair state): the site runs as
// the secondary from then on, which a promotion record refuses. Removed
// already, it does nothing.
//
// It holds the changed regions' LOCK, and the reverse pair state's, and
// moves the directory aside at once: a promoted site's start reads the
// promotion again under either LOCK before it writes anything, so it
// either holds the LOCK first (and the retirement is refused, in use) or
// finds no promotion. Removed in place, file by file, a start let in
// between found the promotion and made a pair state of it that outlived
// the retirement.
func RetireRejoinedBack(cfg *config.Config) error {
	dir := PromotedDir(cfg)
	aside := dir + ".retired"
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		// A retirement that stopped after the move leaves the rest.
		if err := os.RemoveAll(aside); err != nil {
			return fmt.Errorf("rejoin: retiring the promotion: %w", err)
		}
		return nil
	}
	for _, l := range []string{filepath.Join(dir, "LOCK"), filepath.Join(ReverseDir(cfg), stateLockName)} {
		if _, err := os.Stat(filepath.Dir(l)); errors.Is(err, os.ErrNotExist) {
			continue
		}
		lock, err := disk.OS.Lock(l)
		if err != nil {
			return fmt.Errorf("rejoin: retiring the promotion: %s is in use (stop duplex promote here first): %w", filepath.Dir(l), err)
		}
		defer lock.Close()
	}
	if err := os.RemoveAll(aside); err != nil {
		return fmt.Errorf("rejoin: retiring the promotion: %w", err)
	}
	if err := os.Rename(dir, aside); err != nil {
		return fmt.Errorf("rejoin: retiring the promotion: %w", err)
	}
	if err := disk.OS.SyncDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("rejoin: retiring the promotion: %w", err)
	}
	if err := os.RemoveAll(aside); err != nil {
		return fmt.Errorf("rejoin: retiring the promotion: %w", err)
	}
	return nil
}

// OpenRejoinedBack opens the promoted site of cfg, rejoined back (r), as
// the session's secondary, its status saying since when the old primary is
// the primary again.
func OpenRejoinedBack(cfg *config.Config, log *slog.Logger, r Rejoined, opts SecondaryOptions) (*Secondary, error) {
	if err := RetireRejoinedBack(cfg); err != nil {
		return nil, err
	}
	opts.anew, opts.anewUnlessCopied = r.anew(), r.anewUnlessCopied()
	s, err := OpenSecondary(cfg, log, opts)
	if err != nil {
		return nil, err
	}
	if err := r.goneMade(cfg); err != nil {
		s.Close()
		return nil, err
	}
	s.promotedAt, s.promotedFrom, s.rejoinedFrom = r.PromotedAt, control.FormatTime(r.ConsistencyTime), r.ConsistencyTime
	return s, nil
}

// suspendedVolumes lists the volumes of cfg's primary, each suspended with
// no region changed yet, and their sizes by name: what a pair state seeded
// from a promotion starts from.
func suspendedVolumes(cfg *config.Config) (map[string]int64, []pair.SuspendedVolume, error) {
	sizes := map[string]int64{}
	var vols []pair.SuspendedVolume
	for _, sc := range cfg.Primary.Subsystems {
		for _, vc := range sc.Volumes {
			size, err := volumeSize(vc.Path, int64(vc.Size))
			if err != nil {
				return nil, nil, err
			}
			sizes[vc.Name] = size
			vols = append(vols, pair.SuspendedVolume{Name: vc.Name, Subsystem: sc.ID, Size: size})
		}
	}
	return sizes, vols, nil
}

// volumeSize is a volume's configured size, or a block device's own.
func volumeSize(path string, size int64) (int64, error) {
	if size > 0 {
		return size, nil
	}
	v, err := volume.Open(path, 0)
	if err != nil {
		return 0, err
	}
	defer v.Close()
	return v.Size(), nil
}

// ReversePrimary reports whether the promoted site of cfg ran as the
// primary of the reverse direction: it holds that pair state.
func ReversePrimary(cfg *config.Config) bool { return reversed(cfg) }

// TookBack reports whether the site whose changes are ch (zero if it did
// not answer) took the session back from the promoted site of cfg: it
// follows the data generation this site started as the primary of the
// reverse direction. That generation damaged is an error, whatever ch:
// read as "no", the rejoin would go on as the old primary's.
func TookBack(cfg *config.Config, ch control.Changes) (bool, error) {
	gen, err := readGeneration(ReverseDir(cfg), promotionIn(PromotedDir(cfg)))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("rejoin: this site's pair state as the primary of the reverse direction: %w", err)
	}
	return ch.Follows != "" && gen.String() == ch.Follows, nil
}
