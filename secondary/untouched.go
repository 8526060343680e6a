package secondary

import (
	"errors"
	"fmt"
	"slices"

	"duplex/apply"
	"duplex/consistency"
	"duplex/disk"
	"duplex/journal"
	"duplex/recordset"
)

// ErrCannotTell is returned by Untouched when the groups that would say
// are no longer journaled.
var ErrCannotTell = errors.New("the groups applied since the state was seeded are no longer journaled")

// Untouched returns those of vols that no group the secondary of the
// state file at statePath and the journal in journalDir received names
// but by a suspension: its stream wrote nothing to their images, and no
// copy of them began here. A rejoined site's image made anew and lost
// again before the promoted site took its request is such a volume: made
// anew once more, nothing is lost. Only a secondary that still journals
// every group since it was seeded can say; ErrCannotTell otherwise. Read
// before the secondary opens (it changes nothing), with the site's lock
// held.
func Untouched(fsys disk.FS, statePath, journalDir string, vols []string) ([]string, error) {
	st, err := apply.ReadStateFS(fsys, statePath)
	if err != nil {
		return nil, err
	}
	j, err := journal.Open(journalDir, journal.Options{MaxRecord: MaxGroupBytes, FS: fsys})
	if err != nil {
		return nil, fmt.Errorf("secondary: %w", err)
	}
	defer j.Close()
	if first := j.FirstIndex(); first > 1 || first == 0 && st.Group != 0 {
		return nil, fmt.Errorf("%w (state %s applied group %d, journal %s starts at group %d)", ErrCannotTell, statePath, st.Group, journalDir, first)
	}
	touched := map[string]bool{}
	err = j.Replay(0, func(index uint64, data []byte) error {
		g, _, err := consistency.DecodeGroup(data, groupLimits)
		if err != nil {
			return fmt.Errorf("journal record %d: %w", index, err)
		}
		for _, u := range g.Updates {
			if touched[u.Volume] || !slices.Contains(vols, u.Volume) {
				continue
			}
			if u.Kind == recordset.KindMarker {
				if m, err := recordset.DecodeMarker(u); err == nil && m.State == recordset.StateSuspended {
					continue
				}
			}
			touched[u.Volume] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("secondary: journal %s: %w", journalDir, err)
	}
	var out []string
	for _, v := range vols {
		if !touched[v] {
			out = append(out, v)
		}
	}
	return out, nil
}
