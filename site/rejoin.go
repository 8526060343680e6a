package site

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"duplex/actlog"
	"duplex/bitmap"
	"duplex/config"
	"duplex/control"
	"duplex/disk"
	"duplex/pair"
	"duplex/volume"
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
	Union *bitmap.Bitmap
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
	dir := PairStateDir(cfg)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("rejoin: this site's pair state: %w (without it, it shares no history with the promoted site)", err)
	}
	lock, err := disk.Or(nil).Lock(filepath.Join(dir, stateLockName))
	if err != nil {
		return nil, fmt.Errorf("rejoin: pair-state directory %s is in use (stop the primary of session %q first): %w", dir, cfg.Session, err)
	}
	defer lock.Close()
	b, err := os.ReadFile(filepath.Join(dir, "generation.json"))
	if err != nil {
		return nil, fmt.Errorf("rejoin: this site's data generation: %w (without its pair state it shares no history with the promoted site)", err)
	}
	var gf generationFile
	if err := json.Unmarshal(b, &gf); err != nil {
		return nil, fmt.Errorf("rejoin: this site's data generation: %w", err)
	}
	if gf.Generation.String() != ch.Follows {
		return nil, fmt.Errorf("rejoin: this site holds data generation %s, but the promoted site's generation followed %s: "+
			"the histories do not meet, and only a full copy would do", gf.Generation, ch.Follows)
	}
	sizes := map[string]int64{}
	var order []string
	for _, sc := range cfg.Primary.Subsystems {
		for _, vc := range sc.Volumes {
			order = append(order, vc.Name)
			if vc.Size > 0 {
				sizes[vc.Name] = int64(vc.Size)
				continue
			}
			// A block device's size is the device's.
			v, err := volume.Open(vc.Path, 0)
			if err != nil {
				return nil, fmt.Errorf("rejoin: %w", err)
			}
			sizes[vc.Name] = v.Size()
			v.Close()
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
		rv := RejoinVolume{Name: name, Size: sizes[name], Here: d.Regions.DirtyBytes(), Whole: d.Whole, Union: d.Regions.Clone()}
		enc, ok := ch.Volumes[name]
		if !ok {
			rv.Whole = "the promoted site does not have this volume"
			rv.Union.SetAll()
		} else if there, err := bitmap.Decode(enc, sizes[name]); err != nil {
			return nil, fmt.Errorf("rejoin: the promoted site's changed regions of %s: %w", name, err)
		} else {
			rv.There = there.DirtyBytes()
			for r, off, n, ok := there.Next(0); ok; r, off, n, ok = there.Next(r + 1) {
				rv.Union.Set(off, n)
			}
		}
		rv.Copy = rv.Union.DirtyBytes()
		plan = append(plan, rv)
	}
	return plan, nil
}
