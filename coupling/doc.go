// Package coupling couples sessions: several sessions, each its own primary
// and secondary, possibly on different hosts, recover to one time. It is the
// coupled form of step (f) of the method, the master consistency time of
// IBM's coupled XRC (CXRC): every session's secondary forms its own
// consistency groups, and the group's master consistency time is the
// minimum over the member sessions of the time through which each has
// journaled every update. No member applies an update stamped after the
// master time; what it journals beyond it waits in its journal,
// acknowledged to its primary, bounded only by the journal's room (see
// secondary.Gate), and is applied as the master time reaches it. Because
// each member holds
// every update stamped at or before the master time, all members can be
// brought to exactly that time, and a write that depended on another,
// whichever session either went to, is then held only beside it.
//
// The members share their times through etcd rather than a consensus of
// our own (Store; MemStore is its in-memory twin for tests). Under the
// group's prefix, /duplex/coupling/GROUP/:
//
//	member/SESSION   a name new at each add ("" before names were kept) —
//	                 the membership, changed only by duplex couple add and
//	                 remove and by a member's planned switchover, never
//	                 inferred from who is alive; created only if absent
//	time/SESSION     {"time":NS,"at":NS,"journaled":NS,"membership":NAME}
//	                 — the member's
//	                 published time, never lowered (put only on the
//	                 revision last seen, else the later time kept: the
//	                 floor of a duplex couple add outlives a round that
//	                 read the group before it), and the time its own
//	                 secondary journaled through, earlier while it is
//	                 behind a floor; the membership its floor was given
//	                 under ("-": published while not a member; absent
//	                 before names were kept), since only such a time is
//	                 a floor for another member; kept when the member goes silent, so
//	                 that its last time holds the master time; gone with
//	                 the membership when the member leaves
//	alive/SESSION    "" under the member's lease: gone once it is silent
//	                 for longer than [coupling] lease
//	recovery         NS — the time duplex recover --coupled brings every
//	                 member to, fixed by the first one that runs
//
// A Coupler runs beside a secondary. Every [coupling] publish it reads the
// group, publishes its own time, and raises its limit to the master time.
// From etcd it reads the group as a watch on the prefix keeps it
// (EtcdStore.Follow), not by a range each round, once etcd told it, in a
// linearizable read of their names, which keys were put since the
// watch's revision and the watch brought them: a round must count a
// member whose duplex couple add returned before it, or it raises its
// limit past that member's time, and applies a write that depended on a
// write of that member's that no secondary journaled yet.
// An add (duplex couple add, a rejoin's join) makes the membership, then
// publishes the member's floor: the least of the others' times as of the
// write that made it (Store.AddedView; etcd keeps the group as of every
// revision until a compaction). An add cut short between the two (a
// kill) leaves the others' master time waiting for the member, and is
// finished at that same floor by whoever comes next: duplex couple add
// run again, or the member's own secondary at its next round; a
// recovery meanwhile counts the member at it. Never at a later floor,
// which could pass writes of the member made since the membership,
// coupled already, that its secondary has not journaled; nor at the
// member's own time alone, which may be behind what the others applied.
// Once etcd compacted its history past the add, that floor is lost, and
// no later one may be taken for it: the member's writes since the
// membership are coupled already (the others' master time has waited for
// them), and a floor past what its secondary journaled would let the
// others apply writes that depended on some of them it does not hold.
// The add is then finished without a floor, at the member's own time
// (what its secondary journaled), once that reached the least time of
// the others as the member's secondary first read them after the add:
// past every limit they had applied through by then, and they applied no
// further than the member's time since. Until it did, the member
// publishes its own time, not as given under its membership, and
// applies, as the others do, through the least of the members' times,
// its own among them (held, its journal would fill and its time stop
// short of the others'); its secondary's status says what the add waits
// for (Status.AddUnfinished), duplex couple add refuses (it finishes the
// add itself only if the time the member published reached the others'
// least time now), and a recovery counts the member only at such a
// time, else refuses, saying that only duplex couple remove lets the
// others go on without it, uncoupling its writes since the add.
// A member that stops publishing holds the master time where its last time
// is, and status names it as the laggard with how long it has been silent.
// When etcd cannot be reached the limit stays where it is (the members
// apply no further, nothing is lost or mixed) and status says why; it
// advances again when etcd answers. So too while etcd refuses writes for
// want of space (its quota reached: ErrNoSpace), until an operator makes
// room; etcd's history, a revision each publication, must be compacted
// for that not to happen (duplex etcd keeps an hour or two of it).
//
// A planned switchover of a member (duplex switchover) ends its
// secondary for good, so it must neither be blocked by the master time
// nor leave its last time holding it. The rule: the switching member
// applies, as ever, no update past the master time; its promotion waits
// (a few publish rounds while every member runs, its primary holding the
// writes) until the master time reaches the last group its primary
// acknowledged, and fences only then. No exception to the Gate is made
// for it: a master time at or past that group says every other member
// journaled every update stamped up to it, so the others, recovered at
// any later group time, hold every write of theirs that depended on one
// the switched member acknowledged. Held back by a member that does not
// publish, the switchover is refused, nothing changed, naming that
// member (before the writes are paused where the secondary's status
// shows the master time held, or its laggard gone). Once promoted, the member leaves the group (Coupler.Leave:
// membership, time and alive key in one write, and no more
// publications), and the others' master time is the minimum over the
// members left. The leave takes out only the membership the member had
// (compared by name in the transaction): tried again after etcd did not
// answer, it leaves a membership added since alone. Until etcd answers
// the leave, it is owed, recorded on disk with that name before the
// promotion, and the promoted site tries it again while it
// runs, across restarts: the member's last time holds the others
// meanwhile, as any time does while etcd is unreachable. Only a switchover leaves: a
// member failed over (duplex promote) stays, since the others recover to
// the group's one recovery time, taken over every member. Coupled again
// by a rejoin (its reverse direction), the session joins as a new member:
// the rejoined secondary's Coupler adds it, once (Config.Join), after the
// leave is done (the rejoin is refused until then), so that the leave
// never takes the new membership away. It publishes no less than the
// master time the others reached: they may have applied through it, and
// the group's recovery time, the least time published, must not name a
// time before it.
//
// The limit is persisted (WriteMark) before anything is applied through
// it, so that a restart, which replays the journal, replays it through
// the same limit and no further: the volumes can hold writes through the
// limit but none past it, and the group time the members recover to
// (never lower than any master time) is reachable by every member.
package coupling
