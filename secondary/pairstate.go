package secondary

import (
	gomaps "maps"
	"slices"

	"duplex/apply"
	"duplex/consistency"
	"duplex/recordset"
)

// Volume pair states as the secondary reports them.
const (
	StateDuplex    = "duplex"
	StateFirstCopy = "first-copy"
	StateResync    = "resync"
	StateSuspended = "suspended"
	StateDeleted   = "deleted"
)

// pairStates follows the primary's pair-state markers through the journaled
// groups. open holds the volumes whose resync began over a consistent copy
// and has not ended: while it is not empty, groups are journaled but not
// applied, so the volumes stay at the last group before the resync.
type pairStates struct {
	vols map[string]apply.VolumeState
	open map[string]bool
	// unknown caches inconsistent() until step changes vols: every receipt
	// asks for it, and walking 1,024 volumes for it was a third of an idle
	// secondary's receipts. Its callers only read it.
	unknown      []string
	unknownValid bool
}

func newPairStates(vols map[string]apply.VolumeState) *pairStates {
	return &pairStates{vols: gomaps.Clone(vols), open: map[string]bool{}}
}

// neverCopied is the state of a volume the secondary has no whole copy of,
// as its first copy begins.
var neverCopied = apply.VolumeState{State: StateFirstCopy, Inconsistent: true, FirstCopy: true}

// joinedUncopied is the state of a volume the secondary has no whole copy of
// and was not told of a first copy: only one that begins later can make it
// the primary's.
var joinedUncopied = apply.VolumeState{State: StateFirstCopy, Inconsistent: true, FirstCopy: true, NoWholeCopy: true}

// seedVolumes records, in st, every volume of vols the state does not know
// yet as never copied, and reports whether it added any. A volume appears
// empty (or with whatever its image held): only the end of a copy applied
// here makes it the primary's, never a stream of writes alone, whether or
// not the marker that announced its first copy ever arrived. A state from
// a secondary that predates pair states (PredatesPairStates) is upgraded
// instead (upgraded): that version took every volume as duplex, consistent
// as of the applied group, and each is named so. Left unnamed, they were
// taken as duplex only until the state named any volume (a marker of one):
// the next start then took the others for copies never made.
func seedVolumes(st *apply.State, vols []string) (added, upgraded bool) {
	upgraded = PredatesPairStates(*st)
	for _, name := range vols {
		if _, ok := st.Volumes[name]; ok {
			continue
		}
		if st.Volumes == nil {
			st.Volumes = map[string]apply.VolumeState{}
		}
		st.Volumes[name] = joinedUncopied
		if upgraded {
			st.Volumes[name] = apply.VolumeState{State: StateDuplex}
		}
		added = true
	}
	return added, upgraded && added
}

// PredatesPairStates reports whether st was written by a secondary from
// before pair states (2026-12-01): it applied groups but names no volume,
// and forgot none (a state that forgot every volume names none either).
func PredatesPairStates(st apply.State) bool {
	return st.Group != 0 && len(st.Volumes) == 0 && len(st.Forgotten) == 0
}

// clone returns a copy to try a group on.
func (p *pairStates) clone() *pairStates {
	return &pairStates{vols: gomaps.Clone(p.vols), open: gomaps.Clone(p.open)}
}

// snapshot returns the volume states for the applied state. It is taken
// only when no resync is open, so the open set need not be kept with it.
func (p *pairStates) snapshot() map[string]apply.VolumeState {
	if len(p.vols) == 0 {
		return nil
	}
	return gomaps.Clone(p.vols)
}

func (p *pairStates) holding() bool { return len(p.open) > 0 }

// resyncing returns the volumes whose resync holds the secondary, sorted.
func (p *pairStates) resyncing() []string {
	return slices.Sorted(gomaps.Keys(p.open))
}

// inconsistent returns, sorted, the volumes the journaled groups leave
// consistent as of no time, for the primary (transport.Position.Inconsistent):
// of one whose hold this secondary gave up, it knows nothing otherwise.
func (p *pairStates) inconsistent() []string {
	if p.unknownValid {
		return p.unknown
	}
	var out []string
	for name, v := range p.vols {
		if v.Inconsistent {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	p.unknown, p.unknownValid = out, true
	return out
}

func (p *pairStates) get(vol string) apply.VolumeState {
	if v, ok := p.vols[vol]; ok {
		return v
	}
	return apply.VolumeState{State: StateDuplex}
}

// step reads the markers of g in timestamp order. prevTime is the time of
// the group journaled before g.
func (p *pairStates) step(g *consistency.Group, prevTime int64) {
	p.unknownValid = false
	var written map[string]bool // volumes with an update in g before the marker at hand
	for _, u := range g.Updates {
		if u.Kind != recordset.KindMarker {
			if written == nil {
				written = map[string]bool{}
			}
			written[u.Volume] = true
			if v, ok := p.vols[u.Volume]; ok && (v.State == StateSuspended || v.State == StateDeleted) && !v.Inconsistent && !p.open[u.Volume] {
				// The primary replicates the volume's writes again with
				// no marker: it was killed after capturing the suspension
				// (or deletion) but before it saved it, and restarted
				// with the pair duplex. Those writes are stamped after
				// the marker, so the copy is no longer the primary's as
				// of it, but is as of each group from here on: any write
				// the primary made in between it tracked in its bitmap and
				// its activity log, which the restart copied under a
				// resync announced first (the volume is not suspended
				// here then). A primary that suspended the pair captures
				// none of its writes until a marker announces a copy.
				p.vols[u.Volume] = apply.VolumeState{State: StateDuplex}
			}
			continue
		}
		m, err := recordset.DecodeMarker(u)
		if err != nil {
			continue // the decoder checked it already
		}
		if p.vols == nil {
			p.vols = map[string]apply.VolumeState{}
		}
		v := p.get(u.Volume)
		switch m.State {
		case recordset.StateFirstCopy:
			delete(p.open, u.Volume)
			v = neverCopied
		case recordset.StateResync:
			switch {
			case m.Inconsistent:
				delete(p.open, u.Volume)
				v = apply.VolumeState{State: StateResync, Inconsistent: true, NoWholeCopy: v.NoWholeCopy}
			case v.Inconsistent:
				// Nothing consistent to keep: the copy simply goes on.
				v = apply.VolumeState{State: StateResync, Inconsistent: true, FirstCopy: v.FirstCopy, Released: v.Released, NoWholeCopy: v.NoWholeCopy}
			case m.Bytes == 0 && !p.open[u.Volume]:
				// Nothing changed while suspended: the copy is the
				// primary's again from this marker on, with nothing to hold.
				v = apply.VolumeState{State: StateDuplex}
			default:
				p.open[u.Volume] = true
				v = apply.VolumeState{State: StateResync}
			}
		case recordset.StateHoldReleased:
			if !p.open[u.Volume] {
				break
			}
			// The held groups are applied with it: the copy is a mix of
			// before and after the resync from here on.
			delete(p.open, u.Volume)
			v = apply.VolumeState{State: v.State, Inconsistent: true, FirstCopy: v.FirstCopy, Released: true}
		case recordset.StateCopyEnd:
			delete(p.open, u.Volume)
			if v.NoWholeCopy {
				// A resync ends: it copied the regions changed while
				// suspended, over no whole copy of the rest.
				v = apply.VolumeState{State: StateDuplex, Inconsistent: true, FirstCopy: true, NoWholeCopy: true}
				break
			}
			v = apply.VolumeState{State: StateDuplex}
		case recordset.StateSuspended, recordset.StateDeleted:
			state := StateSuspended
			if m.State == recordset.StateDeleted {
				state = StateDeleted
			}
			if p.open[u.Volume] && m.State == recordset.StateDeleted {
				// A deleted volume never completes its resync: stop holding
				// the others for it, and its copy is a mix from now on.
				delete(p.open, u.Volume)
				v = apply.VolumeState{State: state, Inconsistent: true}
				break
			}
			if p.open[u.Volume] || v.Inconsistent || v.State == StateSuspended || v.State == StateDeleted {
				// The hold stays until a later resync of the volume ends;
				// an inconsistent copy stays so; a suspended one keeps
				// its time.
				v.State = state
				break
			}
			// The marker was stamped in the same critical section that
			// stopped capturing the volume's writes, so the copy is the
			// primary's as of the marker, unless the updates between the
			// previous group and the marker were dropped (an automatic
			// suspension): then only as of the previous group.
			since := prevTime
			if written[u.Volume] {
				since = u.Timestamp
			}
			v = apply.VolumeState{State: state, Since: since}
		}
		p.vols[u.Volume] = v
	}
}

// VolumeView is what the secondary reports of one volume.
type VolumeView struct {
	// State is the pair state as of the last journaled group: duplex,
	// first-copy, resync, suspended or deleted.
	State string
	// Consistent says the volume, as applied, is the primary volume's
	// content as of Time; together with the other consistent duplex
	// volumes when State is duplex or a resync holds it.
	Consistent bool
	Time       int64
	// AsOfSuspension says Time is the time the volume was suspended (or
	// deleted) as applied, not a group's: a suspension journaled but held
	// unapplied by a resync leaves the volume as of the applied group.
	AsOfSuspension bool
	// Held says a resync of this volume holds the secondary at the last
	// group before it.
	Held bool
	// FirstCopy says the copy that is not complete is the volume's first.
	FirstCopy bool
	// Released says the secondary gave up the hold of the volume's resync
	// for lack of journal room: not consistent until a copy of it ends.
	Released bool
	// NoWholeCopy says the secondary never held a whole copy of the volume
	// and no first copy of it is under way: no resync makes it consistent,
	// only a first copy (the pair deleted and added again).
	NoWholeCopy bool
	// WaitsForPrimary says journaled groups that name a volume the config
	// no longer has wait for a primary without it (Stats.GroupsWait), and
	// the volume may hold part of them until then.
	WaitsForPrimary bool
	// AppliesWaited says a primary linked without that volume and those
	// groups are applied to the others: the volume may hold part of them
	// until they all are.
	AppliesWaited bool
}

// Volume reports what the secondary knows of vol.
func (s *Secondary) Volume(vol string) VolumeView {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.posMu.Lock()
	st := s.reportedLocked()
	s.posMu.Unlock()
	return s.volumeLocked(vol, st)
}

// volumeLocked reports vol as of the applied state durable. Called with
// s.mu held.
func (s *Secondary) volumeLocked(vol string, durable apply.State) VolumeView {
	applied, ok := durable.Volumes[vol]
	if !ok {
		applied = apply.VolumeState{State: StateDuplex}
	}
	v := VolumeView{State: s.pairs.get(vol).State, Held: s.pairs.open[vol], FirstCopy: applied.FirstCopy, Released: applied.Released, NoWholeCopy: applied.NoWholeCopy}
	v.WaitsForPrimary = s.unconfigured.from != 0 && !s.unconfigured.applying
	v.AppliesWaited = s.unconfigured.applying
	switch {
	case applied.Inconsistent:
	case s.unconfigured.from != 0:
		// The volumes may hold part of the groups that wait for a
		// primary (unconfiguredGroups): as of no group until applied.
	case applied.State == StateSuspended || applied.State == StateDeleted:
		v.Consistent, v.Time, v.AsOfSuspension = applied.Since != 0, applied.Since, applied.Since != 0
	default:
		v.Consistent, v.Time = durable.Time != 0, durable.Time
	}
	return v
}
