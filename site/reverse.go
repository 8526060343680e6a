package site

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"duplex/bitmap"
	"duplex/config"
	"duplex/consistency"
	"duplex/control"
	"duplex/disk"
	"duplex/failover"
	"duplex/journal"
	"duplex/pair"
	"duplex/recordset"
)

// ReverseDir is where a promoted site keeps its pair state as the primary
// of the reverse direction: in its promoted directory, apart from the old
// primary's pair-state directory, which may sit beside the same config.
func ReverseDir(cfg *config.Config) string { return filepath.Join(PromotedDir(cfg), "primary") }

// Reversing reports whether a promoted site runs as the primary of the
// reverse direction: its config has the old primary's places as a secondary
// ([primary] listen and journal), or it ran so before.
func Reversing(cfg *config.Config) bool { return cfg.Primary.Listen != "" || reversed(cfg) }

// reversed reports whether the promoted site of cfg has run as the primary
// of the reverse direction: its pair state holds the changed regions since.
func reversed(cfg *config.Config) bool {
	_, err := os.Stat(filepath.Join(ReverseDir(cfg), "pairs.json"))
	return err == nil
}

// OpenReversePrimary opens a promoted site as the primary of the reverse
// direction (package failover, "One config, both directions"): the primary
// of the reversed config, its volumes the [secondary] section's, dialing the
// old primary at [primary] listen, with its pair state in ReverseDir. The
// first time, the pair state is made from the promotion: every pair
// suspended as of the promotion's consistency time, its changed regions the
// promotion's (Changes, after a kill -9 with every region its log marked),
// the data generation the promotion started, and the timer's mark, so that
// stamps go on above every stamp handed out since the promotion. From then
// on a write marks its pair's bitmap as any suspended pair's, until a rejoin
// (Rejoin) resumes the pairs.
func OpenReversePrimary(cfg *config.Config, log *slog.Logger, opts PrimaryOptions) (_ *Primary, err error) {
	defer func() {
		if err != nil {
			opts.Listeners.Close()
		}
	}()
	rev, err := cfg.Reversed()
	if err != nil {
		return nil, fmt.Errorf("promoted: %w", err)
	}
	// Read and made before the pair state's LOCK, which is in it: at a
	// site that was never promoted, nothing of promoted/ is made. Status
	// answers once they have waited the slow disk's wait (see
	// OpenPrimary's lock).
	opts.prepare = func(starting *startWait) (*failover.Promotion, error) {
		pr, err := promotionToServe(opts.FS, cfg, starting)
		if err != nil {
			return nil, err
		}
		starting.step(ReverseDir(cfg))
		if err := seedReverse(cfg, rev, pr, opts.FS); err != nil {
			return nil, err
		}
		return &pr, nil
	}
	// Read again with the pair state's LOCK, which a rejoin back holds
	// while it records itself: one recorded (and the promotion retired)
	// since the look above is seen, and none is recorded while the LOCK
	// is held.
	opts.underStateLock = func(starting *startWait) (*failover.Promotion, error) {
		pr, err := promotionToServe(opts.FS, cfg, starting)
		if err != nil {
			return nil, err
		}
		return &pr, nil
	}
	opts.StateDir, opts.leaveOf = ReverseDir(cfg), cfg
	return OpenPrimary(rev, log, opts)
}

// promotionToServe reads the promotion the promoted site of cfg serves
// as, refusing a site never promoted, or whose promotion was retired (its
// rejoin back under way or done: the old primary is the session's
// primary, and the rejoin discards whatever the volumes took here). The
// rejoin back is read last: it is recorded before the promotion is
// retired, so a retirement seen by the reads before it is seen there too.
func promotionToServe(fsys disk.FS, cfg *config.Config, starting *startWait) (failover.Promotion, error) {
	starting.step(filepath.Join(PromotedDir(cfg), "promotion.json"))
	pr, err := failover.ReadPromotion(fsys, PromotedDir(cfg))
	notPromoted := errors.Is(err, failover.ErrNotPromoted)
	if err != nil && !notPromoted {
		return pr, fmt.Errorf("promoted: %w", err)
	}
	if !notPromoted && pr.Session != cfg.Session {
		return pr, fmt.Errorf("promoted: the promotion in %s is of session %q, not %q", PromotedDir(cfg), pr.Session, cfg.Session)
	}
	// A rejoin back recorded beside the promotion is under way (a new
	// promotion removes the record first; the rejoin retires the
	// promotion after writing it), or done, the promotion retired since
	// a look before this one: either way the site is the session's
	// secondary, and a new promotion would serve the volumes beside the
	// session's primary.
	starting.step(filepath.Join(RejoinBackDir(cfg), rejoinFile))
	switch r, err := readRejoin(fsys, RejoinBackDir(cfg)); {
	case err == nil:
		return pr, fmt.Errorf("promoted: this site rejoins the session's primary (primary again since %s) as its secondary: "+
			"run duplex rejoin --yes to go on as its secondary", r.PromotedAt)
	case !errors.Is(err, ErrNotRejoined):
		return pr, fmt.Errorf("promoted: %w", err)
	}
	if notPromoted {
		return pr, errors.New("promoted: this secondary was never promoted: duplex promote promotes it")
	}
	return pr, nil
}

// seedReverse makes the reverse direction's pair state from the promotion,
// unless it exists: see OpenReversePrimary. The pair state is written last,
// so a crash before it leaves none, and the next start makes it again. Its
// errors say "promoted: " once: the promotion's refusal, read again below,
// says it already.
func seedReverse(cfg, rev *config.Config, pr failover.Promotion, fsys disk.FS) error {
	err := makeReverse(cfg, rev, pr, fsys)
	var refused refusedPromotion
	if errors.As(err, &refused) {
		return refused.error
	}
	if err != nil {
		return fmt.Errorf("promoted: %w", err)
	}
	return nil
}

// refusedPromotion is promotionToServe's refusal as makeReverse returns it.
type refusedPromotion struct{ error }

func makeReverse(cfg, rev *config.Config, pr failover.Promotion, fsys disk.FS) error {
	dir := ReverseDir(cfg)
	fsys = disk.Or(fsys)
	if _, err := fsys.Stat(filepath.Join(dir, "pairs.json")); err == nil {
		return nil
	}
	sizes, vols, err := suspendedVolumes(rev)
	if err != nil {
		return err
	}
	// Held while the pair state is made: no promoted site serves the
	// volumes meanwhile, and no rejoin back retires the promotion.
	lock, err := lockPromotedDir(fsys, cfg)
	if err != nil {
		return err
	}
	// Read again with the LOCK, before anything is written: a promotion
	// retired since the look before it leaves nothing to make the pair
	// state of, and one made of it would outlive the retirement, taken
	// by a later promotion here for its own.
	if _, err := promotionToServe(fsys, cfg, &startWait{}); err != nil {
		lock.Close()
		return refusedPromotion{err}
	}
	ch, err := failover.OpenLockedChanges(fsys, PromotedDir(cfg), sizes, lock)
	if err != nil {
		return err
	}
	defer ch.Close()
	// Looked for again with the LOCK that every making of it holds: this
	// runs before the pair state's own LOCK, and another start may have
	// made it since the look above, and run on it, its writes marked there
	// alone.
	if _, err := fsys.Stat(filepath.Join(dir, "pairs.json")); err == nil {
		return nil
	}
	for i := range vols {
		vols[i].Changed = ch.Bitmap(vols[i].Name).Clone()
	}
	if pr.HeldGroups > 0 {
		if err := addHeldRegions(cfg, pr, vols); err != nil {
			return err
		}
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, _ := json.Marshal(generationFile{Generation: pr.Generation})
	if err := disk.WriteFileAtomic(fsys, filepath.Join(dir, "generation.json"), b); err != nil {
		return fmt.Errorf("data generation: %w", err)
	}
	switch b, err := disk.ReadFile(fsys, filepath.Join(PromotedDir(cfg), "timer.json")); {
	case err == nil:
		if err := disk.WriteFileAtomic(fsys, filepath.Join(dir, "timer.json"), b); err != nil {
			return fmt.Errorf("timer: %w", err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("timer: %w", err)
	}
	return pair.WriteSuspended(fsys, dir, pr.ConsistencyTime, vols)
}

// promotedAt and promotedFrom are the status's promoted_at and
// promoted_consistency_time: set at a promoted site.
func (p *Primary) promotedAt() string {
	if p.promotion == nil {
		return ""
	}
	return control.FormatTime(p.promotion.At)
}

func (p *Primary) promotedFrom() string {
	if p.promotion == nil {
		return ""
	}
	return control.FormatTime(p.promotion.ConsistencyTime)
}

// changedRegions serves /v1/changes at a promoted site: the promotion and
// each volume's regions the old primary's copy lacks (a suspended pair's
// changed regions, a copying pair's regions still to copy), for the report
// of a rejoin. Nil elsewhere.
func (p *Primary) changedRegions() func() (control.Changes, error) {
	if p.promotion == nil {
		return nil
	}
	pr := p.promotion
	return func() (control.Changes, error) {
		ch := control.Changes{PromotedAt: control.FormatTime(pr.At), ConsistencyTime: pr.ConsistencyTime,
			Generation: pr.Generation.String(), Follows: pr.Follows.String(), Volumes: map[string][]byte{}}
		if p.leaveOf != nil {
			ch.CouplingLeaveOwed, ch.CouplingLeaveUnread = leaveOwed(p.fsys, p.leaveOf, p.log)
		}
		// The held groups' regions are among the pairs' (seedReverse):
		// HeldGroups, which says they are not, stays 0.
		for _, name := range p.order {
			bm, err := p.pairs.Changed(name)
			if err != nil {
				return control.Changes{}, err
			}
			if ch.Volumes[name], err = bm.MarshalBinary(); err != nil {
				return control.Changes{}, err
			}
		}
		return ch, nil
	}
}

// rejoin serves /v1/rejoin at a promoted site: the old primary, about to
// run as this site's secondary, names the regions it may hold writes of
// that this site never had; they are added to the suspended pairs' changed
// regions, saved, and every pair is resumed, so that the resync copies the
// union under the hold of every resync. Asked again (the old primary
// restarted before it heard the answer), the regions of a pair resumed
// already are not added again: they were, before its resume, which is
// refused until the request (pair.ErrRejoinOwed). Nil elsewhere.
func (p *Primary) rejoin() func(control.RejoinRequest) (control.RejoinResult, error) {
	if p.promotion == nil {
		return nil
	}
	return func(req control.RejoinRequest) (control.RejoinResult, error) {
		if req.Generation != p.generation.String() {
			return control.RejoinResult{}, fmt.Errorf("the rejoining site would follow data generation %s, but this site's is %s", req.Generation, p.generation)
		}
		names := make([]string, 0, len(req.Volumes))
		for name := range req.Volumes {
			names = append(names, name)
		}
		sort.Strings(names)
		extra := map[string]*bitmap.Bitmap{}
		for _, name := range names {
			v, ok := p.vols[name]
			if !ok {
				return control.RejoinResult{}, fmt.Errorf("volume %q is not a volume of this site", name)
			}
			bm, err := bitmap.Decode(req.Volumes[name], v.Size())
			if err != nil {
				return control.RejoinResult{}, fmt.Errorf("the regions of %s: %w", name, err)
			}
			extra[name] = bm
		}
		// Every pair, named or not: the request is all the old primary
		// holds that this site never had, so a pair it does not name is
		// owed nothing more, and its resume is no longer refused.
		for _, name := range p.order {
			if _, err := p.pairs.AddChanged(name, extra[name]); err != nil && !errors.Is(err, pair.ErrUnknownVolume) {
				return control.RejoinResult{}, err
			}
		}
		resumed, err := p.pairs.ResumeAll()
		if err != nil {
			return control.RejoinResult{}, err
		}
		// A resume that waits for the old primary to report its journal
		// room (not linked yet) copies the same regions once it starts.
		res := control.RejoinResult{Resumed: resumed, CopyBytes: map[string]int64{}}
		for _, name := range p.order {
			bm, err := p.pairs.Changed(name)
			if err != nil {
				return control.RejoinResult{}, err
			}
			res.CopyBytes[name] = bm.DirtyBytes()
		}
		p.log.Warn("the old primary rejoins as the secondary: resyncing the regions either site changed", "volumes", resumed, "copy_bytes", res.CopyBytes)
		return res, nil
	}
}

// addHeldRegions adds to vols the regions of the groups the promoted site
// journaled after the promotion's group and never applied (a resync or a
// coupled group's master time held them): the old primary holds their
// writes, and its activity log let them
// go once they were journaled, so neither site's regions name them, yet the
// promoted site's volumes do not have them.
func addHeldRegions(cfg *config.Config, pr failover.Promotion, vols []pair.SuspendedVolume) error {
	byName := map[string]*bitmap.Bitmap{}
	for _, v := range vols {
		byName[v.Name] = v.Changed
	}
	j, err := journal.Open(cfg.Secondary.Journal, journal.Options{})
	if err != nil {
		return fmt.Errorf("the groups journaled after the promotion's: %w", err)
	}
	defer j.Close()
	var groups uint64
	err = j.Replay(pr.Group, func(index uint64, data []byte) error {
		g, _, err := consistency.DecodeGroup(data, recordset.DefaultLimits)
		if err != nil {
			return fmt.Errorf("group %d: %w", index, err)
		}
		groups++
		for _, u := range g.Updates {
			if bm := byName[u.Volume]; bm != nil && u.Kind != recordset.KindMarker {
				bm.Set(int64(u.Offset), int64(u.Length))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("the groups journaled after the promotion's: %w", err)
	}
	if groups < pr.HeldGroups {
		return fmt.Errorf("the journal %s holds %d groups after group %d, the promotion recorded %d held: their regions are unknown",
			cfg.Secondary.Journal, groups, pr.Group, pr.HeldGroups)
	}
	return nil
}
