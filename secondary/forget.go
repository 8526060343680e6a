package secondary

import (
	"fmt"
	gomaps "maps"
	"math"
	"slices"
	"strings"

	"duplex/apply"
	"duplex/transport"
)

// forgetUnnamedLocked drops the pair state of every volume the linking
// primary does not name (vols, its hello's): its session no longer has
// the pair, which it forgot at its own start without the volume, and
// added back under the same name the volume is a new pair, with a first
// copy. Kept, the state would still say the secondary holds a copy of
// it, duplex and consistent, over an image the operator removed with the
// volume (a start then refuses it as gone), or over one the new pair's
// first copy has not written yet. Not at the secondary's own open
// without the volume: a mistake in its config alone must not forget a
// copy the primary still pairs; nor a consistent copy the secondary's
// config still has (unnamedCopiesLocked refuses that primary first).
//
// A volume whose resync holds the secondary is kept: its hold is the
// other volumes' consistency, let go only by the markers of the stream.
// The state file is written before the primary is welcomed; one that
// cannot be written is written at the next checkpoint, and a kill before
// that leaves the volume named until a primary links again without it.
// Called with s.mu held, in the hold that links the primary.
func (s *Secondary) forgetUnnamedLocked(vols []transport.VolumeInfo) {
	named := make(map[string]bool, len(vols))
	for _, v := range vols {
		named[v.Name] = true
	}
	forget := func(name string, v apply.VolumeState) bool {
		if named[name] || s.pairs.open[name] {
			return false
		}
		_, configured := s.cfg.Volumes[name]
		return !configured || v != joinedUncopied
	}
	var gone []string
	for name, v := range s.pairs.vols {
		if forget(name, v) {
			gone = append(gone, name)
		}
	}
	s.posMu.Lock()
	for name, v := range s.durable.Volumes {
		if forget(name, v) && !slices.Contains(gone, name) {
			gone = append(gone, name)
		}
	}
	// Named by journaled groups that wait for this link, though perhaps
	// by no pair state (a state upgraded from before pair states names
	// only the volumes configured then).
	for _, name := range s.unconfigured.vols {
		if !named[name] && !slices.Contains(gone, name) {
			gone = append(gone, name)
		}
	}
	s.posMu.Unlock()
	if len(gone) == 0 {
		return
	}
	s.log.Info("the primary linked without these volumes: their pairs are no longer its session's, and the secondary forgets its copies of them",
		"volumes", gone)
	switch recorded, err := s.forgetLocked(gone); {
	case err != nil && recorded:
		s.log.Warn(releaseFailed("the copies forgotten"), "volumes", gone, "err", err)
	case err != nil:
		s.log.Warn("the state file does not record the volumes forgotten yet: it is tried again after a backoff (from a second up to a minute), and at the next checkpoint, until it succeeds", "volumes", gone, "err", err)
	}
}

// releaseFailed is what the log says of a checkpoint that recorded what
// in the state file and then failed to release the journal's applied
// segments (or trim the history): what failed is that housekeeping, not
// the record.
func releaseFailed(what string) string {
	return "the state file records " + what + ", but the checkpoint's release of the journal's applied segments " +
		"(or trim of the history) failed: it is tried again after a backoff (from a second up to a minute) until it succeeds, " +
		"and at the next start if the secondary stops first; the next group's checkpoint stops the secondary if its disk still fails"
}

// forgetLocked forgets the secondary's copies of the volumes gone through
// the last group journaled: a volume the config still has is named as one
// the secondary holds no copy of, the others not at all, and neither the
// groups journaled so far, replayed after a kill, nor recover --at a point
// among them bring the old pair's state back. It returns the error of its
// checkpoint, and whether the state file records the forget all the same
// (the error then the journal's release's, after the write); called with
// s.mu held.
func (s *Secondary) forgetLocked(gone []string) (recorded bool, err error) {
	s.posMu.Lock()
	gone = slices.Clone(gone)
	slices.Sort(gone)
	// A new map: the states already published share the old one.
	forgotten := make(map[string]uint64, len(s.forgotten)+len(gone))
	gomaps.Copy(forgotten, s.forgotten)
	for _, name := range gone {
		forgotten[name] = s.journaled.Group
	}
	s.forgotten = forgotten
	s.pairs.vols = s.withoutForgottenLocked(s.journaled.Group, s.pairs.vols)
	s.pairs.unknownValid = false
	s.durable.Volumes = s.withoutForgottenLocked(s.durable.Group, s.durable.Volumes)
	s.durable.Forgotten = s.forgotten
	s.posMu.Unlock()
	s.ckMu.Lock()
	s.restate = true
	recorded, err = s.checkpointRecording()
	s.ckMu.Unlock()
	return recorded, err
}

// unnamedCopiesLocked returns the refusal of a primary whose hello
// (vols) does not name a volume of which the secondary holds a copy it
// calls consistent, as journaled (as applied if the journaled groups do
// not name it), while its own config still has the volume; "" if there
// is none. Such a primary is a replacement started without the volume,
// or a slip in the primary's config alone: linked, the secondary would
// forget a copy that may be the only good one, unasked. The operator
// decides: the volume back at the primary, or out of the secondary's
// config too (then forgotten at the link). A deleted pair's copy is no
// longer the session's, and one consistent as of no time holds nothing
// to keep: both are forgotten.
// Called with s.mu held, in the hold that links the primary.
func (s *Secondary) unnamedCopiesLocked(vols []transport.VolumeInfo) string {
	named := make(map[string]bool, len(vols))
	for _, v := range vols {
		named[v.Name] = true
	}
	var kept, keptNames []string
	for _, c := range s.consistentCopiesLocked(func(name string) bool { return !named[name] }) {
		kept = append(kept, fmt.Sprintf("%q, of which this secondary holds %s (%s)", c.name, c.as, c.state))
		keptNames = append(keptNames, c.name)
	}
	if len(kept) == 0 {
		return ""
	}
	leaves := "if it leaves the session, take it out of this secondary's config too and start the secondary again: it forgets " +
		"the copy once the primary links"
	var holding []string
	for _, name := range keptNames {
		if s.pairs.open[name] {
			holding = append(holding, fmt.Sprintf("%q", name))
		}
	}
	if len(holding) > 0 {
		// The volume's own resync holds the others: only the end of its
		// copy, which a primary without it never sends, lets them go.
		// Another volume's hold is no obstacle: a secondary without the
		// volume opens over the held groups that name it and applies
		// them without its updates once it is forgotten.
		leaves = fmt.Sprintf("it cannot leave the session yet: the resync of %s holds this secondary, and only the end of that copy, "+
			"which a primary without the volume never sends, lets the other volumes go. Add it back to the primary's config first; "+
			"once every pair is duplex, take it out of both configs and start both sites again",
			strings.Join(holding, ", "))
	}
	return fmt.Sprintf("the primary does not name volume %s: linked, the secondary would forget that copy (its image stays, "+
		"no longer called consistent), which may be the only good one. If the volume stays in the session, add it back to the "+
		"primary's config and start the primary again (a primary that forgot the pair copies the volume whole from its own image; "+
		"if this copy is the good one, make this site the primary instead: duplex promote); %s",
		strings.Join(kept, "; volume "), leaves)
}

// heldCopy is a copy the secondary calls consistent: its volume, as what
// ("a copy consistent as of TIME") and its pair state.
type heldCopy struct{ name, as, state string }

// consistentCopiesLocked returns, sorted by volume, each volume of the
// secondary's config that which selects and of which the secondary holds
// a copy it calls consistent, as journaled (as applied if the journaled
// groups do not name it), or whose resync holds it. Called with s.mu held.
func (s *Secondary) consistentCopiesLocked(which func(name string) bool) []heldCopy {
	consistent := func(v apply.VolumeState, ok bool) bool {
		return ok && !v.Inconsistent && v.State != StateDeleted
	}
	s.posMu.Lock()
	applied := s.reportedLocked()
	s.posMu.Unlock()
	var kept []heldCopy
	for name := range s.cfg.Volumes {
		if !which(name) {
			continue
		}
		// The journaled groups are the copy's future: the applied state
		// lags them, for ever while another volume's resync holds, and
		// an old pair's copy they deleted or began anew is applied as
		// consistent until then. Refused on it, the primary would be
		// refused until the hold ends, which only its stream can do.
		j, jok := s.pairs.vols[name]
		keep := consistent(j, jok)
		if !jok {
			a, aok := applied.Volumes[name]
			keep = consistent(a, aok)
		}
		if !s.pairs.open[name] && !keep {
			continue
		}
		v := s.volumeLocked(name, applied)
		as := "a copy the groups journaled make consistent"
		if v.Consistent {
			as = "a copy consistent as of " + fmtTime(v.Time)
		}
		kept = append(kept, heldCopy{name, as, v.State})
	}
	slices.SortFunc(kept, func(a, b heldCopy) int { return strings.Compare(a.name, b.name) })
	return kept
}

// withoutForgottenLocked returns vols, the pair states of group n, without
// the volumes forgotten after n was journaled (see forgotten). One the
// secondary's config still has is named as a volume it holds no copy of
// (as Open seeds one it does not know): unnamed, it would be taken as
// duplex, from before pair states. Called with posMu or mu held.
func (s *Secondary) withoutForgottenLocked(n uint64, vols map[string]apply.VolumeState) map[string]apply.VolumeState {
	cloned := false
	for name, at := range s.forgotten {
		if n > at {
			// Journaled after the volume was forgotten: its states say
			// what the stream since says of it, a new pair's.
			continue
		}
		_, configured := s.cfg.Volumes[name]
		if v, ok := vols[name]; !ok && !configured || configured && v == joinedUncopied {
			continue
		}
		if !cloned {
			vols, cloned = gomaps.Clone(vols), true
			if vols == nil {
				vols = map[string]apply.VolumeState{}
			}
		}
		if configured {
			vols[name] = joinedUncopied
		} else {
			delete(vols, name)
		}
	}
	return vols
}

// ForgottenThroughJournal, as a volume's group in apply.State.Forgotten,
// forgets the volume through every group journaled when the secondary
// opens: Open names that group (resolveForgotten).
const ForgottenThroughJournal = math.MaxUint64

// ForgetCopy records in st, before the secondary opens, that its copy of
// vol, a deleted pair's whose image is gone, is no longer one: the image
// is made anew as zeros. Deleted, consistent as of no time, and forgotten
// through the groups journaled so far, the old pair's: neither their
// replay nor recover --at a point of the history before names the zeros
// as a copy.
func ForgetCopy(st *apply.State, vol string) {
	if st.Volumes == nil {
		st.Volumes = map[string]apply.VolumeState{}
	}
	st.Volumes[vol] = apply.VolumeState{State: StateDeleted, Inconsistent: true, NoWholeCopy: true}
	forgotten := make(map[string]uint64, len(st.Forgotten)+1)
	gomaps.Copy(forgotten, st.Forgotten)
	forgotten[vol] = ForgottenThroughJournal
	st.Forgotten = forgotten
}

// resolveForgotten names, for each volume of st forgotten through the
// journal (ForgottenThroughJournal), the last group journaled, last, and
// reports whether it named any: the groups a new pair's stream brings
// later are the new pair's.
func resolveForgotten(st *apply.State, last uint64) bool {
	resolved := false
	for name, at := range st.Forgotten {
		if at != ForgottenThroughJournal {
			continue
		}
		if !resolved {
			st.Forgotten, resolved = gomaps.Clone(st.Forgotten), true
		}
		st.Forgotten[name] = max(last, st.Group)
	}
	return resolved
}
