package secondary

import (
	"fmt"
	"slices"
	"strings"

	"duplex/consistency"
	"duplex/recordset"
)

// unconfiguredGroups are the journaled groups, not applied when the
// secondary last stopped (killed before it applied them), that name
// volumes its config no longer has. Open cannot apply them: a group is
// applied to every volume it names or to none, and dropping the volume's
// updates would leave its copy behind the others', which only forgetting
// it makes true. Nor can Open forget it: a volume out of this config
// alone may be a slip, and its copy the only good one. So they wait, the
// groups before them applied, until a primary links: one without the
// volumes has them forgotten (forgetUnnamedLocked) and the groups applied
// without their updates (applyUnconfiguredLocked); one that names them is
// refused (checkVolumes), and the groups go on waiting for the volumes to
// come back to the config. Meanwhile the volumes may hold part of them (a
// kill in the middle of applying one), so they are not read (torn).
type unconfiguredGroups struct {
	from uint64     // the first such group, 0 if none
	vols []string   // the volumes, sorted
	jobs []applyJob // Open's jobs from group from on
	// why is what status says of them (Stats.GroupsWait).
	why string
	// applying is set while a primary's link applies them, s.mu let go:
	// another primary is refused meanwhile.
	applying bool
}

// note records that group index names vols, volumes the config does not
// have.
func (u *unconfiguredGroups) note(index uint64, vols []string) {
	if len(vols) == 0 {
		return
	}
	if u.from == 0 {
		u.from = index
	}
	for _, v := range vols {
		if !slices.Contains(u.vols, v) {
			u.vols = append(u.vols, v)
		}
	}
	slices.Sort(u.vols)
}

// unconfiguredIn returns the volumes g names that the config does not have
// and that were not forgotten after g was journaled: the groups through
// a volume's forgetting carry the old pair's updates, dropped as it is
// applied (withoutForgottenUpdates).
func (s *Secondary) unconfiguredIn(g *consistency.Group) []string {
	var out []string
	for i := range g.Updates {
		name := g.Updates[i].Volume
		if _, ok := s.cfg.Volumes[name]; ok || slices.Contains(out, name) {
			continue
		}
		if at, ok := s.forgotten[name]; ok && g.Number <= at {
			continue
		}
		out = append(out, name)
	}
	return out
}

// splitJobs returns the jobs through groups before from, and the rest.
func splitJobs(jobs []applyJob, from uint64) (before, after []applyJob) {
	i := 0
	for i < len(jobs) && jobs[i].number() < from {
		i++
	}
	return jobs[:i:i], jobs[i:]
}

func quotedList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// waitForUnconfigured has the groups Open found naming volumes the config
// no longer has wait for a primary, or refuses the start where they
// cannot: a volume whose own resync holds the others (a primary without
// it never sends the end of that copy, which alone lets them go), or a
// coupled secondary with groups past its Gate's limit (gatedAhead: its
// applier, not Open, applies those). Called by replay.
func (s *Secondary) waitForUnconfigured(gatedAhead bool) error {
	u := &s.unconfigured
	names := quotedList(u.vols)
	back := fmt.Sprintf("put %s back in this secondary's config and start it again", names)
	for _, name := range u.vols {
		if s.pairs.open[name] {
			return fmt.Errorf("secondary: journal %s: the groups from %d on name volume %q, which this secondary's config no longer has, "+
				"and the resync of it holds the other volumes at group %d: only the end of that copy lets them go, and a primary without "+
				"the volume never sends it. The volume cannot leave the session yet: %s; once every pair is duplex, take it out of "+
				"both sites' configs and start both again", s.cfg.JournalDir, u.from, name, s.durable.Group, back)
		}
	}
	if gatedAhead {
		return fmt.Errorf("secondary: journal %s: the groups from %d on, not applied when the secondary stopped, name volume %s, which "+
			"this secondary's config no longer has, and its coupled group's master time holds some of them: %s, which applies them; "+
			"then, if the volume leaves the session, stop it, take the volume out again and start it: it forgets the volume once a "+
			"primary links without it", s.cfg.JournalDir, u.from, names, back)
	}
	s.torn = fmt.Errorf("the journaled groups %d through %d, not applied when the secondary stopped, name volume %s, which its config "+
		"no longer has: they wait for a primary that links without it (the volume is then forgotten, and the groups applied to the "+
		"others), and the volumes may hold part of them until then. If the volume stays in the session, or to promote or recover this "+
		"site without a primary (the groups are then applied to every volume), %s",
		u.from, s.journaled.Group, names, back)
	u.why = s.torn.Error()
	s.log.Warn("journaled groups name volumes this secondary's config no longer has: they wait for a primary that links without them, "+
		"which forgets them; until then the volumes are not read. If a volume stays in the session, put it back in the config and start again",
		"volumes", u.vols, "from_group", u.from, "through_group", s.journaled.Group, "applied_group", s.durable.Group)
	return nil
}

// applyUnconfiguredLocked applies the groups Open had wait, once a primary
// linked without their volumes and forgetUnnamedLocked forgot those
// through the last group journaled: their updates are dropped, and the
// other volumes' applied. Called with s.mu held, in the hold that links
// the primary, before its Welcome: nothing was handed to the applier
// since Open, which no primary was welcomed before. It lets s.mu go while
// it applies them and records them applied, and takes it again: large
// groups take as long as their writes and the volumes' flush, which
// status, a fence and other primaries must not wait for. Meanwhile the
// volumes stay unread (s.torn) and unconfigured.applying refuses other
// primaries; the caller checks again what may have changed.
func (s *Secondary) applyUnconfiguredLocked() error {
	u := s.unconfigured
	if u.from == 0 {
		return nil
	}
	s.posMu.Lock()
	for _, name := range u.vols {
		if at, ok := s.forgotten[name]; !ok || at < s.journaled.Group {
			s.posMu.Unlock()
			return fmt.Errorf("secondary: volume %q, which the journaled groups from %d on name, is not forgotten: they cannot be applied without it", name, u.from)
		}
	}
	first := max(u.from, s.durable.Group+1)
	s.posMu.Unlock()
	// Status says what is true while they are applied, and after an
	// apply that failed, not that they wait for a primary: one linked.
	names := quotedList(u.vols)
	s.unconfigured.applying = true
	s.unconfigured.why = fmt.Sprintf("applying %d journaled groups (%d through %d), which name volume %s, which this secondary's config "+
		"no longer has: a primary linked without it, the volume is forgotten and the groups are applied to the others, which are not "+
		"read until then", s.journaled.Group-first+1, first, s.journaled.Group, names)
	s.mu.Unlock()
	err := s.applyWaiting(u.jobs)
	s.mu.Lock()
	s.unconfigured.applying = false
	if err != nil {
		s.unconfigured.why = fmt.Sprintf("the journaled groups %d through %d name volume %s, which this secondary's config no longer has: "+
			"a primary linked without it, and applying them to the others failed part-way (%v); they wait for the next primary that "+
			"links without it, which applies the rest, or a restart of the secondary, which replays them; the volumes may hold part of "+
			"them until then, and are not read", u.from, s.journaled.Group, names, err)
		return fmt.Errorf("secondary: applying the journaled groups that waited for the primary: %w", err)
	}
	s.unconfigured = unconfiguredGroups{}
	s.log.Info("the primary linked without the volumes the journaled groups named: applied them to the others", "volumes", u.vols,
		"through_group", s.Position().Group)
	return nil
}

// applyWaiting applies jobs, the groups that waited, under one exclusion
// of readers, which stay refused (s.torn) until every group is applied,
// and then records them applied. Called without s.mu.
func (s *Secondary) applyWaiting(jobs []applyJob) error {
	s.view.Lock()
	// An earlier link's apply that failed part-way moved the applied
	// position past the groups it applied: applyLocked goes on after it,
	// and its first job must be the one the next group ends, or no group
	// would match its job and the position would stay behind what the
	// volumes hold.
	_, jobs = splitJobs(jobs, s.appliedState().Group+1)
	var err error
	if len(jobs) > 0 {
		err = s.applyLocked(jobs)
	}
	if err != nil {
		s.torn = fmt.Errorf("applying the groups after group %d failed part-way (%w): the volumes may hold part of them; "+
			"restart the secondary to replay the journal", s.durable.Group, err)
	} else {
		s.torn = nil
	}
	s.view.Unlock()
	if err != nil {
		return err
	}
	s.ckMu.Lock()
	recorded, cerr := s.checkpointRecording()
	s.ckMu.Unlock()
	switch {
	case cerr != nil && recorded:
		s.log.Warn(releaseFailed("the groups applied"), "err", cerr)
	case cerr != nil:
		s.log.Warn("the state file does not record the groups applied yet: it is tried again after a backoff (from a second up to a minute), and at the next checkpoint, until it succeeds", "err", cerr)
	}
	return nil
}

// withoutForgottenUpdates returns g without the updates of the volumes the
// config does not have that were forgotten after g was journaled: the old
// pair's, which no volume takes (checkGroup let them pass).
func (s *Secondary) withoutForgottenUpdates(g *consistency.Group) *consistency.Group {
	s.posMu.Lock()
	forgotten := s.forgotten
	s.posMu.Unlock()
	if len(forgotten) == 0 {
		return g
	}
	// The updates of a volume come in runs: looked up once a run, as
	// apply.Updates does, not hashed per update.
	drop, last := false, ""
	for i := range g.Updates {
		name := g.Updates[i].Volume
		if name == last {
			continue
		}
		last = name
		if _, ok := s.targets[name]; !ok {
			drop = true
			break
		}
	}
	if !drop {
		return g
	}
	kept := make([]recordset.Update, 0, len(g.Updates))
	for _, u := range g.Updates {
		if _, ok := s.targets[u.Volume]; !ok {
			if at, ok := forgotten[u.Volume]; ok && g.Number <= at {
				continue
			}
		}
		kept = append(kept, u)
	}
	out := *g
	out.Updates = kept
	return &out
}
