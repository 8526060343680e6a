package secondary

import (
	"duplex/apply"
	"duplex/consistency"
)

// RecoversTo is where a restart of the secondary, or recover, leaves the
// volumes, given the applied state of the state file and the journaled groups
// after it, in order: the last group after which no resync holds the volumes,
// with its consistency time, or the state's own group and time. It follows
// the pair-state markers as replay does, so that a check made from outside
// the process (the fault campaign reads the journal of a killed secondary)
// cannot disagree with it.
func RecoversTo(st apply.State, groups []*consistency.Group) (group uint64, t int64) {
	p := newPairStates(st.Volumes)
	group, t = st.Group, st.Time
	prev := st.Time
	for _, g := range groups {
		p.step(g, prev)
		prev = g.Time
		if !p.holding() {
			group, t = g.Number, g.Time
		}
	}
	return group, t
}
