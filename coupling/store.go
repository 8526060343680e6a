package coupling

import (
	"context"
	"errors"
)

// Report is what a member publishes.
type Report struct {
	// Time is the member's time: every update stamped at or before it is
	// journaled at its secondary.
	Time int64 `json:"time"`
	// At is the wall clock of the publication (Unix ns).
	At int64 `json:"at"`
	// Journaled is the highest time the member's own secondary knew it
	// had journaled every update through, never lowered. Time is later
	// when the member was given a floor (duplex couple add, a rejoin)
	// past it: its own writes stamped between were made before it was
	// coupled, and are not there, so recovered at a group's time past
	// Journaled it holds its writes only through Journaled. 0: only an
	// add's floor published, and the member is said to hold no more than
	// it applied; or published before it was kept (Membership ""), and
	// Time is taken for what it journaled, as it was then.
	Journaled int64 `json:"journaled,omitempty"`
	// Membership names the membership (View.Memberships) under which
	// Time was given its floor (Add, a rejoin), or is Outside: published
	// while the session was not a member (its secondary started before
	// its add, or running on after a duplex couple remove). Such a time,
	// or one left from before a couple remove (an older membership's),
	// bounds no limit the others applied through, and is no floor for
	// another member until its add gives it one. A publication that
	// names none keeps the one the store holds, and Outside replaces no
	// membership. "": published before memberships were named, taken as
	// given.
	Membership string `json:"membership,omitempty"`
}

// Outside is Report.Membership of a time published while its session was
// not a member.
const Outside = "-"

// given says whether member's time in v was given its floor under its
// membership now: only then may it be taken for another's floor.
func (v View) given(member string) bool {
	ms, ok := v.Memberships[member]
	r, had := v.Reports[member]
	return ok && had && (r.Membership == ms || r.Membership == "")
}

// Given says whether member's time in v was given its floor under its
// membership now: false for a member whose add (duplex couple add, a
// rejoin) has not published it yet, cut short or under way.
func (v View) Given(member string) bool { return v.given(member) }

// mergeMembership is the membership a publication naming named leaves
// where held was.
func mergeMembership(named, held string) string {
	if named == "" || named == Outside && held != "" {
		return held
	}
	return named
}

// View is the group as one read of the store saw it.
type View struct {
	Members []string          // sorted
	Reports map[string]Report // by member; members that never published are absent
	Alive   map[string]bool   // members whose lease holds
	// Memberships names each member's membership: a new one at every
	// add, so that a leave owed takes out only the one it was meant for.
	Memberships map[string]string
	// Recovery is the time duplex recover --coupled fixed, 0 if none.
	Recovery int64
}

// Store holds a coupled group's shared state (etcd in production, MemStore
// in tests). Every call fails rather than waits for longer than its ctx.
type Store interface {
	// Read returns the group in one consistent read.
	Read(ctx context.Context) (View, error)
	// Publish puts member's report, and renews its lease of life. It
	// never lowers the member's time: a later one in the store, written
	// since the caller read it (the floor duplex couple add gives), stays;
	// nor does it drop the membership the time was given under
	// (Report.Membership) unless r names another.
	Publish(ctx context.Context, member string, r Report) error
	// AddMember makes member a member, by a new membership unless it is
	// one already; RemoveMember takes whichever membership it has away.
	AddMember(ctx context.Context, member string) error
	// AddMemberView is AddMember returning the group as of that write,
	// in the same read: the others' times then, which every limit
	// applied is within and which no write of member made after it is,
	// are what its floor is taken from.
	AddMemberView(ctx context.Context, member string) (View, error)
	// AddedView returns the group as of the write that made member's
	// membership (AddMemberView's view), ErrNotMember if it has none:
	// what the floor of an add cut short before it published it is
	// taken from, by whoever finishes it, or counts it meanwhile. Wraps
	// ErrAddForgotten once the store no longer holds that moment.
	AddedView(ctx context.Context, member string) (View, error)
	RemoveMember(ctx context.Context, member string) error
	// Leave removes member and its published time and alive key, in
	// one write, if its membership is still the one named
	// (View.Memberships): a member that ended for good (a planned
	// switchover) holds no master time, and one added again starts
	// without a time. A leave tried again after etcd did not answer it
	// must not take out a membership added since (duplex couple add, a
	// rejoin), whose writes are coupled with the others'; it then
	// changes nothing.
	Leave(ctx context.Context, member, membership string) error
	// FixRecovery sets the group's recovery time to t unless one is set,
	// and returns the one that holds.
	FixRecovery(ctx context.Context, t int64) (int64, error)
	// ReplaceRecovery sets the group's recovery time to t if it is old,
	// and returns the one that holds.
	ReplaceRecovery(ctx context.Context, old, t int64) (int64, error)
	Close() error
}

// ErrUnreachable wraps every failure to reach the store.
var ErrUnreachable = errors.New("etcd unreachable")

// ErrNoSpace wraps etcd's refusal of a write once its database reached
// its quota: it answers, but takes no write until an operator makes room
// (etcd's NOSPACE alarm stays raised until disarmed).
var ErrNoSpace = errors.New("etcd out of space (its NOSPACE alarm is raised: it refuses every write)")

// ErrNotMember is AddedView's error for a session that is not a member.
var ErrNotMember = errors.New("not a member")

// ErrAddForgotten is AddedView's error once the store no longer holds the
// group as of the member's add (etcd compacted its history past it).
var ErrAddForgotten = errors.New("etcd no longer holds the group as of the member's add (compacted)")
