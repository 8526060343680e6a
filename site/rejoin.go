package site

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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
)

// RejoinVolume is what a rejoin of the old primary copies for one volume
// from the promoted site: the union of the regions where the old primary
// may hold writes the promoted site never had (Here: discarded) and those
// the promoted site wrote since its promotion (There).
type RejoinVolume struct {
	Name  string
	Size  int64
	Here  int64  // bytes of the old primary's diverging regions
	There int64  // bytes of the promoted site's changed regions
	Copy  int64  // bytes of their union
	Whole string // why the whole volume is copied, if it is
	// Gone says the image here is gone (missing or empty): the rejoined
	// site makes it anew, and the whole volume is copied.
	Gone bool
	// Discard are the regions here (Here), Union those and the promoted
	// site's (Copy).
	Discard *bitmap.Bitmap
	Union   *bitmap.Bitmap
}

// PlanRejoin computes, at the stopped old primary, what a rejoin as the
// secondary of the promoted site would copy, per volume, from its pair
// state, its activity log and the promoted site's changes (ch). It changes
// nothing, and holds the pair-state directory's lock while it reads, so a
// running primary is refused. The old primary must hold the data generation
// the promotion followed: otherwise the two sites share no history, and
// only a full copy would do.
func PlanRejoin(cfg *config.Config, ch control.Changes) ([]RejoinVolume, error) {
	if !cfg.HasPrimary() {
		return nil, errors.New("rejoin: the config has no [primary] section")
	}
	if err := refuseWhileLeaveOwed(cfg, ch); err != nil {
		return nil, err
	}
	dir := PairStateDir(cfg)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("rejoin: this site's pair state: %w (without it, it shares no history with the promoted site)", err)
	}
	lock, err := disk.Or(nil).Lock(filepath.Join(dir, stateLockName))
	if err != nil {
		return nil, fmt.Errorf("rejoin: pair-state directory %s is in use (stop the primary of session %q first): %w", dir, cfg.Session, err)
	}
	defer lock.Close()
	gen, err := readGeneration(dir, promotionIn(dir))
	switch {
	case errors.Is(err, disk.ErrDamaged):
		return nil, fmt.Errorf("rejoin: %w", err)
	case err != nil:
		return nil, fmt.Errorf("rejoin: this site's data generation: %w (without its pair state it shares no history with the promoted site)", err)
	}
	if gen.String() != ch.Follows {
		return nil, fmt.Errorf("rejoin: this site holds data generation %s, but the promoted site's generation followed %s: "+
			"the histories do not meet, and only a full copy would do", gen, ch.Follows)
	}
	sizes, paths := map[string]int64{}, map[string]string{}
	var order []string
	for _, sc := range cfg.Primary.Subsystems {
		for _, vc := range sc.Volumes {
			order = append(order, vc.Name)
			size, err := volumeSize(vc.Path, int64(vc.Size))
			if err != nil {
				return nil, fmt.Errorf("rejoin: %w", err)
			}
			sizes[vc.Name], paths[vc.Name] = size, vc.Path
		}
	}
	marks, logErr := actlog.ReadMarks(nil, filepath.Join(dir, "activity.log"))
	div, err := pair.ReadDivergence(nil, dir, sizes, marks, logErr)
	if err != nil {
		return nil, fmt.Errorf("rejoin: %w", err)
	}
	var plan []RejoinVolume
	for _, name := range order {
		d := div[name]
		rv := RejoinVolume{Name: name, Size: sizes[name], Here: d.Regions.DirtyBytes(), Whole: d.Whole, Discard: d.Regions.Clone(), Union: d.Regions.Clone()}
		enc, ok := ch.Volumes[name]
		if !ok {
			rv.Whole = "the promoted site does not have this volume"
			rv.Union.SetAll()
			rv.Discard.SetAll()
		} else if there, err := bitmap.Decode(enc, sizes[name]); err != nil {
			return nil, fmt.Errorf("rejoin: the promoted site's changed regions of %s: %w", name, err)
		} else {
			rv.There = there.DirtyBytes()
			for r, off, n, ok := there.Next(0); ok; r, off, n, ok = there.Next(r + 1) {
				rv.Union.Set(off, n)
			}
		}
		if err := copyWholeIfGone(&rv, paths[name]); err != nil {
			return nil, fmt.Errorf("rejoin: %w", err)
		}
		rv.Copy = rv.Union.DirtyBytes()
		plan = append(plan, rv)
	}
	return plan, nil
}

// rejoinFile records, in the old primary's pair-state directory, that the
// site rejoined the promoted site as its secondary.
const rejoinFile = "rejoin.json"

// ErrNotRejoined is returned by ReadRejoin for a site that has not rejoined.
var ErrNotRejoined = errors.New("not rejoined")

var errNotRejoined = ErrNotRejoined

// Rejoined records that the old primary rejoined the promoted site as its
// secondary: written once the report is accepted, before anything else
// changes, so that a kill -9 at any point leaves a rejoin that `duplex
// rejoin --yes` takes up again, and a `duplex primary` there is refused.
type Rejoined struct {
	Session string `json:"session"`
	// At is when the rejoin began (Unix ns, wall clock).
	At int64 `json:"rejoined_at_ns"`
	// PromotedAt, ConsistencyTime and Generation are the promotion's: since
	// when the other site is primary, what the volumes here held of it then,
	// and the data generation this site follows from now on.
	PromotedAt      string `json:"promoted_at"`
	ConsistencyTime int64  `json:"promoted_consistency_time_ns"`
	Generation      string `json:"generation"`
	// Discarded are, per volume, the regions where this site may hold
	// writes the promoted site never had (an encoded bitmap): the promoted
	// site copies them, with those it changed.
	Discarded map[string][]byte `json:"discarded"`
	// Delivered says the promoted site holds Discarded and resumed its
	// pairs: the copy is under way or done.
	Delivered bool `json:"delivered,omitempty"`
	// Gone are the volumes whose image here was gone when the rejoin
	// began, copied whole: the rejoined site makes their images anew at
	// its first open, which records that it did (GoneMade).
	Gone []string `json:"gone_here,omitempty"`
	// GoneMade says the images of Gone were made anew: recorded before
	// the promoted site is asked to copy, which may write to them from
	// then on, and whose groups then name them as its volumes' copies.
	// From then on a gone image is made anew again only while the
	// journal says no copy to it began (anewUnlessCopied), and refused
	// otherwise, as any copy's: made anew again, its zeros would be
	// reported as the copy until the request, asked again, copied it.
	GoneMade bool `json:"gone_made,omitempty"`
	// dir is where the record is kept: the old primary's pair-state
	// directory, or beside the journal of a promoted site rejoining back
	// (RejoinBackDir).
	dir string
}

// ReadRejoin returns the rejoin recorded at the old primary of cfg.
func ReadRejoin(cfg *config.Config) (Rejoined, error) { return readRejoin(nil, PairStateDir(cfg)) }

func readRejoin(fsys disk.FS, dir string) (Rejoined, error) {
	b, err := disk.ReadFile(disk.Or(fsys), filepath.Join(dir, rejoinFile))
	if errors.Is(err, os.ErrNotExist) {
		return Rejoined{}, ErrNotRejoined
	}
	if err != nil {
		return Rejoined{}, fmt.Errorf("rejoin: %w", err)
	}
	var r Rejoined
	err = disk.DecodeRecord(b, &r, "session", "rejoined_at_ns")
	if err == nil && (r.Session == "" || r.At == 0) {
		err = errors.New("it names no session or time")
	}
	if err != nil {
		return Rejoined{}, fmt.Errorf("%w: it records that this site rejoined the promoted site as its secondary, and holds what "+
			"the rejoin discarded here: put back a copy of it", disk.Damaged("rejoin record", filepath.Join(dir, rejoinFile), err))
	}
	r.dir = dir
	return r, nil
}

func writeRejoin(cfg *config.Config, r Rejoined) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("rejoin: %w", err)
	}
	dir := r.dir
	if dir == "" {
		dir = PairStateDir(cfg)
	}
	if err := disk.WriteFileAtomic(disk.Or(nil), filepath.Join(dir, rejoinFile), append(b, '\n')); err != nil {
		return fmt.Errorf("rejoin: %w", err)
	}
	return nil
}

// BeginRejoin makes the stopped old primary of cfg the secondary of the
// promoted site whose changes are ch, as plan (PlanRejoin) says: it seeds
// the state of a secondary of the reversed config (its journal at
// [primary] journal), every volume suspended as of the promotion's
// consistency time and the promoted site's generation followed, then
// records the rejoin. From then on the volumes here change only as that
// secondary applies what the promoted site sends, whole consistency
// groups; the resync of the regions either site changed is held until it
// ends, so they stay as they are until then, and jump.
func BeginRejoin(cfg *config.Config, ch control.Changes, plan []RejoinVolume) (Rejoined, error) {
	rev, err := cfg.Reversed()
	if err != nil {
		return Rejoined{}, fmt.Errorf("rejoin: %w", err)
	}
	dir := PairStateDir(cfg)
	lock, err := disk.Or(nil).Lock(filepath.Join(dir, stateLockName))
	if err != nil {
		return Rejoined{}, fmt.Errorf("rejoin: pair-state directory %s is in use (stop the primary of session %q first): %w", dir, cfg.Session, err)
	}
	defer lock.Close()
	var gen transport.Generation
	if err := gen.UnmarshalText([]byte(ch.Generation)); err != nil || gen == 0 {
		return Rejoined{}, fmt.Errorf("rejoin: the promoted site's data generation %q: %v", ch.Generation, err)
	}
	// A journal of an earlier secondary here would be replayed over the
	// volumes from the seeded state on.
	if segs, _ := filepath.Glob(filepath.Join(rev.Secondary.Journal, "*.seg")); len(segs) > 0 {
		return Rejoined{}, fmt.Errorf("rejoin: the journal directory %s (primary.journal) holds segments of an earlier secondary: "+
			"remove them, then rejoin again", rev.Secondary.Journal)
	}
	r := Rejoined{Session: cfg.Session, At: time.Now().UnixNano(), PromotedAt: ch.PromotedAt, ConsistencyTime: ch.ConsistencyTime,
		Generation: ch.Generation, Discarded: map[string][]byte{}}
	st := apply.State{Session: cfg.Session, Time: ch.ConsistencyTime, Volumes: map[string]apply.VolumeState{}}
	for _, v := range plan {
		vs := apply.VolumeState{State: secondary.StateSuspended, Since: ch.ConsistencyTime}
		if v.Whole != "" {
			// Nothing says which regions differ: the volume here is no
			// image the promoted site ever had until its copy ends.
			vs = apply.VolumeState{State: secondary.StateSuspended, Inconsistent: true}
		}
		st.Volumes[v.Name] = vs
		if v.Gone {
			r.Gone = append(r.Gone, v.Name)
		}
		// Only the regions here: the promoted site adds its own.
		b, err := v.Discard.MarshalBinary()
		if err != nil {
			return Rejoined{}, fmt.Errorf("rejoin: %w", err)
		}
		r.Discarded[v.Name] = b
	}
	if err := secondary.Seed(nil, StatePath(rev), st, gen); err != nil {
		return Rejoined{}, fmt.Errorf("rejoin: %w", err)
	}
	if err := oweJoin(cfg, rev); err != nil {
		return Rejoined{}, err
	}
	r.dir = dir
	if err := writeRejoin(cfg, r); err != nil {
		return Rejoined{}, err
	}
	// A switchover that handed the session to the promoted site is
	// superseded: the rejoin record refuses a start as the primary now.
	if err := failover.RemoveSwitchover(nil, dir); err != nil {
		return Rejoined{}, fmt.Errorf("rejoin: %w", err)
	}
	return r, nil
}

// Delivered records that the promoted site holds the regions of r and
// resumed its pairs.
func (r Rejoined) MarkDelivered(cfg *config.Config) (Rejoined, error) {
	r.Delivered = true
	return r, writeRejoin(cfg, r)
}

// anew returns the volumes whose gone image the rejoined site makes anew
// as it opens: those of Gone until they were made.
func (r Rejoined) anew() []string {
	if r.Delivered || r.GoneMade {
		return nil
	}
	return r.Gone
}

// anewUnlessCopied returns the volumes whose image was made anew and whose
// copy may not have begun: the promoted site's answer is not recorded.
func (r Rejoined) anewUnlessCopied() []string {
	if r.Delivered || !r.GoneMade {
		return nil
	}
	return r.Gone
}

// goneMade records, once the rejoined site opened, that the images of
// Gone were made anew, before it asks the promoted site to copy: a kill
// before the record makes them anew again at the next open, over nothing
// the copy wrote. The record is written where it was read (r.dir).
func (r Rejoined) goneMade(cfg *config.Config) error {
	if len(r.anew()) == 0 {
		return nil
	}
	r.GoneMade = true
	if err := writeRejoin(cfg, r); err != nil {
		return fmt.Errorf("the images made anew (%s) cannot be recorded before the copy is asked for: %w", strings.Join(r.Gone, ", "), err)
	}
	return nil
}

// OpenRejoined opens the old primary of cfg, rejoined (r), as the secondary
// of the reversed config: it takes the link on [primary] listen and serves
// control on [primary] control and the read-only exports on [primary] nbd,
// its status saying since when the other site is primary.
func OpenRejoined(cfg *config.Config, log *slog.Logger, r Rejoined, opts SecondaryOptions) (*Secondary, error) {
	rev, err := cfg.Reversed()
	if err != nil {
		return nil, fmt.Errorf("rejoin: %w", err)
	}
	opts.anew, opts.anewUnlessCopied = r.anew(), r.anewUnlessCopied()
	// The promoted site is the primary: its pair state is not the
	// SESSION.primary beside the config, which is this site's own.
	opts.primaryPairState = ReverseDir(cfg) + " at the promoted site, promoted/primary beside its state.json"
	s, err := OpenSecondary(rev, log, opts)
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
