package secondary

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"duplex/consistency"
	"duplex/journal"
	"duplex/recordset"
)

// A hold is bounded by the journal's room. Nothing after the applied group
// is released while a resync holds the volumes, so a resync that outgrows
// the journal (a pair suspended part-way and left so, or a copy larger than
// the primary foresaw) would fill the journal's file system, and then the
// secondary stops for every volume. Before that, once the free space falls
// below what the journal needs besides the hold (holdReserve), the secondary
// gives the hold up: a StateHoldReleased marker for each held volume is
// added to the group about to be journaled, so replay, recover and
// RecoversTo take the same decision; that group applies every held one,
// the journal is released at the next checkpoint, and the other volumes go
// on. The held volumes are not consistent from then on (their image from
// before the resync is overwritten by part of it) until a later copy of
// them ends; status says so for each, and the log gives the numbers.

// holdReserve is the journal room a hold leaves: what the journal needs of
// its file system to go on (its active segment, the one before it and two
// of the largest groups; see journal.Needs).
func (s *Secondary) holdReserve() int64 {
	return journal.Needs(s.segmentSize, s.largestGroup())
}

// largestGroup is the largest group to expect: LargestGroup, or a
// segment's size without it.
func (s *Secondary) largestGroup() int64 {
	if s.cfg.LargestGroup > 0 {
		return s.cfg.LargestGroup
	}
	return s.segmentSize
}

// holdRelease is a hold given up, for the log and status.
type holdRelease struct {
	vols    []string
	free    uint64
	reserve int64
}

// releaseIfShort gives up the hold, in g, if journaling g would leave the
// journal's file system less free space than holdReserve. It returns nil
// when it does not: no hold, the free space unknown or enough, g ends the
// hold anyway, or no room in g's time for the markers (the next group then
// does it; the reserve has room for two). Called with s.mu held, before g is
// encoded.
func (s *Secondary) releaseIfShort(g *consistency.Group) *holdRelease {
	if !s.pairs.holding() {
		return nil
	}
	free, ok := s.journalFree()
	if !ok {
		return nil
	}
	reserve := s.holdReserve()
	if int64(free) >= reserve+journal.RecordSpace(groupSize(g)) {
		return nil
	}
	trial := s.pairs.clone()
	trial.step(g, s.journaled.Time)
	vols := trial.resyncing()
	if len(vols) == 0 {
		return nil
	}
	last := s.journaled.Time
	if n := len(g.Updates); n > 0 {
		last = max(last, g.Updates[n-1].Timestamp)
	}
	if last+int64(len(vols)) > g.Time {
		return nil
	}
	ups := slices.Clip(g.Updates)
	for i, vol := range vols {
		u := recordset.Marker{State: recordset.StateHoldReleased}.Update(vol)
		u.Timestamp = last + 1 + int64(i)
		ups = append(ups, u)
	}
	g.Updates = ups
	return &holdRelease{vols: vols, free: free, reserve: reserve}
}

// released logs and counts a hold given up in group g. Called with s.mu
// held, once g is journaled and before the held groups are applied.
func (s *Secondary) released(rel *holdRelease, g *consistency.Group) {
	heldFor := time.Since(s.held.Since).Round(time.Millisecond)
	vols := strings.Join(rel.vols, ", ")
	s.stats.HoldsReleased++
	s.stats.LastHoldRelease = fmt.Sprintf("%s: gave up the hold of the resync of %s at group %d after %s: %d groups (%s) held, "+
		"the journal's file system had %s free and the journal needs %s besides the hold; %s not consistent until a copy of it completes",
		time.Now().UTC().Format(time.RFC3339), vols, g.Number, heldFor, s.held.Groups, mib(s.held.Bytes), mib(int64(rel.free)), mib(rel.reserve), vols)
	s.log.Warn("journal nearly full: gave up holding the volumes for a resync; its volumes are not consistent until a copy of them completes "+
		"(their image from before the resync is lost), the held groups are applied and the other volumes go on",
		"volumes", rel.vols, "group", g.Number, "held_groups", s.held.Groups, "held_bytes", s.held.Bytes, "held_for", heldFor,
		"journal_free_bytes", rel.free, "journal_reserve_bytes", rel.reserve)
}

// groupSize bounds the journal record of g.
func groupSize(g *consistency.Group) int64 {
	size := int64(1024)
	for _, u := range g.Updates {
		size += int64(40 + len(u.Data) + len(u.Volume))
	}
	return size
}
