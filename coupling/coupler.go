package coupling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Config configures a Coupler.
type Config struct {
	Store  Store
	Group  string
	Member string // the session's name
	// Publish is how often the group is read and the member's time
	// published (default 20ms).
	Publish time.Duration
	// MarkPath holds the limit across restarts (MarkPath); "" keeps it in
	// memory only (tests).
	MarkPath string
	// MarkEvery bounds how often the mark is written, each write an fsync
	// (default 50ms): the limit rises at most that often.
	MarkEvery time.Duration
	// Own returns the member's time: every update stamped at or before it
	// is journaled here.
	Own    func() int64
	Logger *slog.Logger
	// Now is the clock of silences (default the wall clock).
	Now func() time.Time
	// Join: the member is added to the group if it is not one, once, and
	// Joined is then called to record that no join is owed any more. A
	// session coupled again after its switchover (the secondary of its
	// reverse direction, rejoined) joins so; a member removed later by
	// duplex couple remove stays out.
	Join   bool
	Joined func() error
}

// Status is the group as the member last saw it.
type Status struct {
	Group  string
	Member string
	// Master is the master consistency time: the minimum over the members
	// of their published times; 0 until every member published one.
	Master int64
	// Limit is the time this member may apply through: the highest master
	// time it saw and persisted.
	Limit int64
	// Laggard is the member whose time is the master time (or that never
	// published one), Silent how long since its time last advanced, Gone
	// whether its lease of life expired.
	Laggard string
	Silent  time.Duration
	Gone    bool
	Members []string
	// Held says why the limit does not advance ("" while it does): etcd
	// unreachable, this session not a member, a member without a time.
	Held string
	// HeldSince is when it began (zero while the limit advances).
	HeldSince time.Time
	// AddUnfinished says why the member's add, cut short and its moment
	// forgotten by etcd, is not finished yet ("" once it is): a group
	// recovery is refused until it is.
	AddUnfinished string
	// Recovery is the time recover --coupled fixed, 0 if none.
	Recovery int64
}

const notRead = "the group has not been read yet"

// Coupler publishes a member's time and follows the group's master time.
type Coupler struct {
	cfg Config
	log *slog.Logger

	// roundMu keeps Leave out of a round under way, whose publication
	// would put the member's time back; published is the highest time
	// this Coupler knows is its member's in the store. Both guarded by
	// roundMu.
	roundMu   sync.Mutex
	published int64

	join bool // a join is owed (Config.Join); guarded by roundMu
	// forgottenFloor is the least time of the others as a round first
	// saw them under membership *forgotten, whose add's moment the store
	// no longer holds (finishAdd); guarded by roundMu.
	forgotten      *string
	forgottenFloor int64

	mu sync.Mutex
	// membership is the member's membership as the last round saw it
	// (View.Memberships), the one Leave takes out; written in rounds
	// (roundMu held too), so that Membership waits for none under way.
	membership string
	left       bool // Leave took the member out of the group: no more rounds
	// cancelRound ends the last round's store calls (Leave).
	cancelRound context.CancelFunc
	limit       int64
	marked      time.Time
	changed     chan struct{} // closed and replaced when limit rises
	status      Status
	advanced    map[string]time.Time // when each member's time last rose
	times       map[string]int64
}

// New returns a Coupler whose limit starts at the persisted mark (0 if
// none).
func New(cfg Config) (*Coupler, error) {
	if cfg.Publish <= 0 {
		cfg.Publish = 20 * time.Millisecond
	}
	if cfg.MarkEvery <= 0 {
		cfg.MarkEvery = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Coupler{cfg: cfg, log: cfg.Logger.With("component", "coupling", "group", cfg.Group), changed: make(chan struct{}),
		advanced: map[string]time.Time{}, times: map[string]int64{}, join: cfg.Join}
	if cfg.MarkPath != "" {
		m, ok, err := ReadMark(cfg.MarkPath)
		if err != nil {
			return nil, err
		}
		if ok && m.Group != cfg.Group {
			return nil, fmt.Errorf("coupling: mark %s belongs to group %q, not %q: the secondary applied through that group's master time; "+
				"remove the file only once this secondary is recovered or copied anew", cfg.MarkPath, m.Group, cfg.Group)
		}
		c.limit = m.Through
	}
	c.status = Status{Group: cfg.Group, Member: cfg.Member, Limit: c.limit, Held: notRead, HeldSince: cfg.Now()}
	return c, nil
}

// Limit returns the time through which the member may apply, and a channel
// closed once it rises.
func (c *Coupler) Limit() (int64, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.limit, c.changed
}

// Status returns what the last round saw.
func (c *Coupler) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.status
	st.Members = slices.Clone(st.Members)
	return st
}

// Run follows the group until ctx ends.
func (c *Coupler) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Publish)
	defer t.Stop()
	for {
		c.Round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Round reads the group once, publishes the member's time and raises the
// limit to the master time if it can.
func (c *Coupler) Round(ctx context.Context) {
	c.roundMu.Lock()
	defer c.roundMu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, max(2*time.Second, 4*c.cfg.Publish))
	defer cancel()
	c.mu.Lock()
	left := c.left
	c.cancelRound = cancel
	c.mu.Unlock()
	if left {
		return
	}
	own := c.cfg.Own()
	read := c.cfg.Store.Read
	if f, ok := c.cfg.Store.(Follower); ok {
		read = f.Follow
	}
	view, err := read(rctx)
	if err != nil {
		c.holdFor(err)
		return
	}
	// Once it has a time: the master time of the others waits for a
	// member without one.
	joining := c.join && own > 0
	var fl int64 // the floor of an add this round finishes
	var behind error
	if _, member := view.Memberships[c.cfg.Member]; joining || member && !view.given(c.cfg.Member) {
		if fl, err = c.finishAdd(rctx, &view, joining, own); errors.Is(err, ErrJournaledBehind) {
			// Published all the same, not as given: what its secondary
			// journaled is what a couple add and a recovery go by.
			behind = err
		} else if err != nil {
			if errors.Is(err, ErrUnreachable) || errors.Is(err, ErrNoSpace) {
				c.holdFor(err)
			} else {
				c.hold(fmt.Sprintf("%v; the master time holds meanwhile", err))
			}
			return
		}
	}
	// Never lower: a master time others applied through may have come
	// from the published one, and a restart may know an earlier time
	// than it published (the empty groups formed since its last journaled
	// one).
	ms, member := view.Memberships[c.cfg.Member]
	if member {
		c.mu.Lock()
		c.membership = ms
		c.mu.Unlock()
	}
	prev, had := view.Reports[c.cfg.Member]
	pub := max(own, prev.Time, c.published, fl)
	// What it journaled, apart from a floor: a restart knows less.
	journaled := max(own, prev.Journaled)
	// An add finished gives its time its floor under the membership it
	// made; a session not a member says its time is outside the group.
	var given string
	switch {
	case behind != nil:
		// Not given: a publication names no membership, and keeps
		// the one its time names, but the first must not pass for one
		// from before memberships were named.
		if !had {
			given = Outside
		}
	case member && !view.given(c.cfg.Member):
		given = ms
	case !member && prev.Membership != Outside:
		given = Outside
	}
	if !had || pub > prev.Time || journaled > prev.Journaled || given != "" || !view.Alive[c.cfg.Member] ||
		time.Duration(c.cfg.Now().UnixNano()-prev.At) > c.cfg.Publish*50 {
		r := Report{Time: pub, At: c.cfg.Now().UnixNano(), Journaled: journaled, Membership: given}
		if err := c.cfg.Store.Publish(rctx, c.cfg.Member, r); err != nil {
			c.holdFor(err)
			return
		}
		r.Membership = mergeMembership(r.Membership, prev.Membership)
		view.Reports[c.cfg.Member], view.Alive[c.cfg.Member] = r, true
	}
	c.published = pub
	if behind != nil {
		// It applies meanwhile, through the least of the members' times,
		// its own among them: held, its journal would fill with what it
		// does not apply, and its secondary journal nothing more, never
		// to reach the others' time.
		c.follow(view, behind.Error())
		return
	}
	if joining {
		c.joined()
	}
	c.follow(view, "")
}

// finishAdd adds the member to the group if it is not one and joining
// (its rejoin), or finishes an add that has not given its time its floor
// (duplex couple add or a join cut short, or under way), and returns
// that floor: the least time of the others that had one as of the write
// that made the membership (Store.AddedView), which any limit they may
// have applied through is within, and no write of the member made since
// is: a recovery time, fixed at the least time published, must not fall
// behind the former nor pass the latter where the member's secondary
// has not journaled it. The member publishes it in the same round: the
// master time of the others waits for it meanwhile. Joined once it has a
// time (its leave took its last time away), its own time may be behind
// (the rejoin's consistency time) only by writes of its new direction
// made before the join, which no other member's writes were coupled with.
//
// Once the store forgot the group as of that write (etcd compacted its
// history past it), the floor is lost, and no later one may be taken for
// it: the member's writes since the membership are coupled already, and
// a floor past what its secondary journaled would let the others apply
// writes that depended on some it does not hold. The add is finished
// then without a floor, at the member's own time, once that reached the
// least time of the others as this Coupler first saw them after the add,
// past every limit they had applied through by then (and they applied no
// further than the member's time since): ErrJournaledBehind until it
// did.
func (c *Coupler) finishAdd(ctx context.Context, view *View, joining bool, own int64) (int64, error) {
	if joining && !slices.Contains(view.Members, c.cfg.Member) {
		v, err := c.cfg.Store.AddMemberView(ctx, c.cfg.Member)
		if err != nil {
			return 0, fmt.Errorf("coupling: session %s joining group %q again: %w", c.cfg.Member, c.cfg.Group, err)
		}
		// The group as of the add.
		*view = v
		c.log.Info("joined the coupled group again, in the session's new direction", "member", c.cfg.Member)
		return floor(v, c.cfg.Member), nil
	}
	if view.given(c.cfg.Member) {
		return 0, nil
	}
	added, err := c.cfg.Store.AddedView(ctx, c.cfg.Member)
	switch {
	case errors.Is(err, ErrAddForgotten):
		ms := view.Memberships[c.cfg.Member]
		// A pointer: "" names the memberships made before names were kept.
		if c.forgotten == nil || *c.forgotten != ms {
			// Read, not followed: a watch may bring a member's removal
			// late, and its time, left behind what the others applied
			// through since, would pass for their least.
			group, err := c.cfg.Store.Read(ctx)
			if err != nil {
				return 0, fmt.Errorf("coupling: session %s finishing its add to group %q: %w", c.cfg.Member, c.cfg.Group, err)
			}
			if group.Memberships[c.cfg.Member] != ms {
				return 0, fmt.Errorf("coupling: session %s's membership of group %q changed while this round read it", c.cfg.Member, c.cfg.Group)
			}
			c.forgotten, c.forgottenFloor = &ms, floor(group, c.cfg.Member)
		}
		have := max(own, view.Reports[c.cfg.Member].Time, c.published)
		if err := journaledBehind(c.cfg.Member, c.cfg.Group, have, c.forgottenFloor); err != nil {
			return 0, err
		}
		c.log.Info("finished an add whose moment etcd no longer holds, at the session's own time, past the others' least time after it",
			"member", c.cfg.Member, "time", have, "others", c.forgottenFloor)
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("coupling: session %s finishing its add to group %q: %w", c.cfg.Member, c.cfg.Group, err)
	case added.Memberships[c.cfg.Member] != view.Memberships[c.cfg.Member]:
		return 0, fmt.Errorf("coupling: session %s's membership of group %q changed while this round read it", c.cfg.Member, c.cfg.Group)
	}
	return floor(added, c.cfg.Member), nil
}

// joined records, once the member published as one, that no join is owed
// any more: a crash before leaves the record, and the restart joins again.
func (c *Coupler) joined() {
	c.join = false
	if c.cfg.Joined != nil {
		if err := c.cfg.Joined(); err != nil {
			// A restart joins again if the member is not one: the same.
			c.log.Warn("joined the coupled group; the record of the join owed stays", "err", err)
		}
	}
}

// floor is the least time of view's members other than member that have
// one, 0 if none has: no less than any limit a member may have applied
// through. A member without a time is passed over rather than taken for
// a group forming: it may be one added at the same moment (a couple add
// in parallel, a rejoin), which must not leave this one at its own
// earlier time. Read in the write that made member one of the group
// (Store.AddMemberView), the floor is no later than the moment it joined
// (every time published is of a clock that read past it), so that it
// claims none of member's writes coupled with the others'; read later, a
// time published meanwhile could pass a write of member made since.
//
// A time not given its floor under its member's membership (View.given:
// published while the session was not a member, by its secondary started
// before its add or before a duplex couple remove, its add not done yet)
// is passed over too: the others may have applied past it.
func floor(view View, member string) int64 {
	var t int64
	for _, m := range view.Members {
		if r := view.Reports[m]; m != member && r.Time != 0 && view.given(m) && (t == 0 || r.Time < t) {
			t = r.Time
		}
	}
	return t
}

// Leave takes the member out of its group for good, as a planned
// switchover does once the member's secondary is promoted: membership,
// published time and alive key go in one write (Store.Leave), and the
// Coupler publishes nothing more, so that the member's last time no
// longer holds the master time of the others. The limit stays where it
// is. Safe for the others because the member left only once it applied
// every update its primary acknowledged, through a master time at or
// past the last of them: every other member had journaled everything
// stamped up to it. A member added again later (duplex couple add)
// starts as a new one (Add). The Coupler publishes nothing more
// also when the store does not answer: the leave is then owed, and
// whoever finishes it must find no round under way that would publish the
// member's time again.
func (c *Coupler) Leave(ctx context.Context) error {
	// A round under way ends rather than holds the switchover up, to
	// the read's timeout where etcd does not answer; none starts after.
	c.mu.Lock()
	c.left = true
	if c.cancelRound != nil {
		c.cancelRound()
	}
	c.mu.Unlock()
	c.roundMu.Lock()
	defer c.roundMu.Unlock()
	c.mu.Lock()
	ms := c.membership
	c.mu.Unlock()
	if err := c.cfg.Store.Leave(ctx, c.cfg.Member, ms); err != nil {
		return fmt.Errorf("coupling: session %s leaving group %q: %w", c.cfg.Member, c.cfg.Group, err)
	}
	c.mu.Lock()
	c.status.Held = fmt.Sprintf("session %q left group %q (switched over): it publishes no time and applies nothing more", c.cfg.Member, c.cfg.Group)
	c.status.HeldSince = c.cfg.Now()
	c.mu.Unlock()
	c.log.Info("left the coupled group: its last time no longer holds the master time", "member", c.cfg.Member)
	return nil
}

// Membership returns the member's membership as the last round saw it,
// "" if none saw one: what a leave owed must name (Store.Leave).
func (c *Coupler) Membership() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.membership
}

// holdFor holds the master time for err, etcd's failure: unreachable, it
// advances again once etcd answers; out of space, only once an operator
// made room, which status must say.
func (c *Coupler) holdFor(err error) {
	if errors.Is(err, ErrNoSpace) {
		c.hold(fmt.Sprintf("%v: the master time holds until etcd has room again: compact its history, "+
			"defragment it and disarm the alarm (etcdctl compact, defrag, alarm disarm)", err))
		return
	}
	c.hold(fmt.Sprintf("%v: the master time holds; it advances again once etcd answers", err))
}

// hold records why the limit does not advance.
func (c *Coupler) hold(why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status.Held == "" {
		c.status.HeldSince = c.cfg.Now()
		c.log.Warn("master consistency time held", "why", why)
	}
	c.status.Held = why
	c.status.Silent = c.sinceLocked(c.status.Laggard)
}

func (c *Coupler) sinceLocked(member string) time.Duration {
	if at, ok := c.advanced[member]; ok {
		return c.cfg.Now().Sub(at)
	}
	return 0
}

// follow computes the master time of view and raises the limit to it.
// unfinished says why the member's add is not finished yet (finishAdd's
// ErrJournaledBehind), "" if nothing waits.
func (c *Coupler) follow(view View, unfinished string) {
	now := c.cfg.Now()
	c.mu.Lock()
	for m, r := range view.Reports {
		if r.Time > c.times[m] || c.advanced[m].IsZero() {
			c.times[m], c.advanced[m] = r.Time, now
		}
	}
	st := Status{Group: c.cfg.Group, Member: c.cfg.Member, Members: view.Members, Recovery: view.Recovery, Limit: c.limit,
		HeldSince: c.status.HeldSince, AddUnfinished: unfinished}
	if unfinished != "" && c.status.AddUnfinished == "" {
		c.log.Warn("the session's add is not finished: a group recovery is refused until it is", "why", unfinished)
	}
	var master int64
	switch {
	case len(view.Members) == 0:
		st.Held = fmt.Sprintf("group %q has no members: add each session with duplex couple add", c.cfg.Group)
	case !slices.Contains(view.Members, c.cfg.Member) && c.join:
		st.Held = fmt.Sprintf("session %q joins group %q again (its rejoin) once this secondary journaled a first group from its primary (members now: %v)",
			c.cfg.Member, c.cfg.Group, view.Members)
	case !slices.Contains(view.Members, c.cfg.Member):
		st.Held = fmt.Sprintf("session %q is not a member of group %q (members: %v): duplex couple add --config FILE %s", c.cfg.Member, c.cfg.Group,
			view.Members, c.cfg.Member)
	}
	for _, m := range view.Members {
		// Time 0 is a member that journaled nothing yet (it publishes to
		// renew its lease): no time, as one that never published.
		r, ok := view.Reports[m]
		if !ok || r.Time == 0 {
			st.Laggard, st.Gone = m, !view.Alive[m]
			if st.Held == "" {
				st.Held = fmt.Sprintf("member %s has published no time yet (is its secondary running with [coupling] group = %q?)", m, c.cfg.Group)
			}
			master = 0
			break
		}
		if master == 0 || r.Time < master {
			master, st.Laggard, st.Gone = r.Time, m, !view.Alive[m]
		}
	}
	if st.Held != "" {
		master = 0
	}
	st.Master = master
	if st.Laggard != "" {
		if _, ok := c.advanced[st.Laggard]; !ok {
			c.advanced[st.Laggard] = now
		}
		st.Silent = c.sinceLocked(st.Laggard)
	}
	raise := master > c.limit && (c.cfg.MarkPath == "" || now.Sub(c.marked) >= c.cfg.MarkEvery)
	if st.Held == "" {
		st.HeldSince = time.Time{}
	} else if c.status.Held == "" {
		st.HeldSince = now
		c.log.Warn("master consistency time held", "why", st.Held)
	}
	if st.Held == "" && c.status.Held != "" && c.status.Held != notRead {
		c.log.Info("master consistency time advances again", "after", now.Sub(c.status.HeldSince).Round(time.Millisecond))
	}
	c.status = st
	c.mu.Unlock()
	if !raise {
		return
	}
	if c.cfg.MarkPath != "" {
		if err := WriteMark(c.cfg.MarkPath, Mark{Group: c.cfg.Group, Through: master}); err != nil {
			c.hold(fmt.Sprintf("cannot persist the master time: %v", err))
			return
		}
	}
	c.mu.Lock()
	c.limit, c.marked = master, now
	c.status.Limit = master
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// Fixed is a limit that never changes: a recovery's.
type Fixed int64

// Limit implements the secondary's gate.
func (f Fixed) Limit() (int64, <-chan struct{}) { return int64(f), nil }

// RecoveryTime fixes the group's recovery time, the first time any member
// asks, at the master time of the group as published (every member
// journaled every update through it), and returns it. Every member that
// asks later gets the same one. applied is the time the asking member
// applied through (its mark): a recovery time before it is of an earlier
// incident, since no member's limit passes the minimum of the published
// times, and is fixed again from the times published now. Once every
// member's secondary is stopped, as recover --coupled and promote ask, the
// members' limits stay where they are, and all get the same time.
func RecoveryTime(ctx context.Context, store Store, member string, applied int64) (int64, View, error) {
	view, err := store.Read(ctx)
	if err != nil {
		return 0, view, err
	}
	if !slices.Contains(view.Members, member) {
		return 0, view, fmt.Errorf("coupling: session %q is not a member of the group (members: %v)", member, view.Members)
	}
	if view.Recovery != 0 && view.Recovery >= applied {
		return view.Recovery, view, nil
	}
	var t int64
	for _, m := range view.Members {
		mt, err := counted(ctx, store, view, m)
		if err != nil {
			return 0, view, err
		}
		if mt == 0 {
			return 0, view, fmt.Errorf("coupling: member %s never published a time: no time is known that it holds (remove it with duplex couple remove %s to recover the others without it)", m, m)
		}
		if t == 0 || mt < t {
			t = mt
		}
	}
	var fixed int64
	if view.Recovery == 0 {
		fixed, err = store.FixRecovery(ctx, t)
	} else {
		fixed, err = store.ReplaceRecovery(ctx, view.Recovery, t)
	}
	view.Recovery = fixed
	return fixed, view, err
}

// counted is member's time in view as a recovery counts it: an add that
// has not given it its floor yet (duplex couple add cut short, or under
// way) is counted at that floor, as it will publish it; its own time, not
// given under its membership, may be behind what the others applied.
func counted(ctx context.Context, store Store, view View, member string) (int64, error) {
	t := view.Reports[member].Time
	if view.given(member) {
		return t, nil
	}
	added, err := store.AddedView(ctx, member)
	switch {
	case errors.Is(err, ErrAddForgotten):
		// Counted as its secondary will finish the add (finishAdd), or
		// not at all.
		if err := journaledBehind(member, "", t, floor(view, member)); err != nil {
			return 0, err
		}
		return t, nil
	case err != nil:
		return 0, fmt.Errorf("coupling: member %s, whose add has not given it its floor yet: %w", member, err)
	case added.Memberships[member] != view.Memberships[member]:
		return 0, fmt.Errorf("coupling: member %s's membership changed while the group was read: run it again", member)
	}
	return max(t, floor(added, member)), nil
}

// Add makes member one of the group's members (duplex couple add). Its
// writes are coupled with the group's from then on: the others' limits may
// have passed the member's own time, and it gets no less than the least
// time of those that have one (floor), as a rejoined member publishes
// (Coupler.rejoin), so that a recovery time, fixed at the least time
// published, never falls behind what they applied. The times are read
// as of the add, in its transaction: no limit passes them (after it, the
// others' master time waits for the member), and they are of clocks that
// read them before the add, so the floor claims none of the member's
// writes made after it, which are coupled with the others'. A member already in the group keeps its time: it may
// be the laggard. Added while no other has a time (the group forming), no
// member applied anything, and it publishes its own. An add cut short
// whose moment the store forgot is finished only at the member's own
// time (finishForgotten).
func Add(ctx context.Context, store Store, member string, now time.Time) error {
	view, err := store.Read(ctx)
	if err != nil {
		return fmt.Errorf("coupling: adding %s: %w", member, err)
	}
	if slices.Contains(view.Members, member) && view.given(member) {
		return nil
	}
	// The others' times as of the add: this run's, or that of an earlier
	// run cut short before it published the floor (a kill), whose
	// writes since are coupled already.
	added, err := store.AddMemberView(ctx, member)
	if errors.Is(err, ErrAddForgotten) {
		return finishForgotten(ctx, store, member, now)
	}
	if err != nil {
		return fmt.Errorf("coupling: adding %s: %w", member, err)
	}
	// Published also without a floor (the group forming) over a time
	// published outside the group, so that it is known to be given under
	// this membership.
	f := floor(added, member)
	if err := store.Publish(ctx, member, Report{Time: f, At: now.UnixNano(), Membership: added.Memberships[member]}); err != nil {
		return fmt.Errorf("coupling: %s added; publishing the others' least time %d as its own: %w", member, f, err)
	}
	return nil
}

// finishForgotten finishes the add of member, a member whose add was cut
// short before it gave it its floor, once the store forgot the group as
// of that add: at the member's own time, if that is no earlier than the
// least time of the others now, which is past every limit they applied
// through before the add, and which they have not applied past since
// (their master time waits for the member). Taken for a floor, that
// least time could pass writes of the member made since its membership
// (coupled already, their dependents held back) that its secondary has
// not journaled; nor is the membership made anew, which for a moment
// would leave the others' master time to pass them.
func finishForgotten(ctx context.Context, store Store, member string, now time.Time) error {
	view, err := store.Read(ctx)
	if err != nil {
		return fmt.Errorf("coupling: adding %s: %w", member, err)
	}
	ms, ok := view.Memberships[member]
	switch {
	case !ok:
		return fmt.Errorf("coupling: adding %s: its membership was removed meanwhile", member)
	case view.given(member):
		return nil
	}
	have := view.Reports[member].Time
	if err := journaledBehind(member, "", have, floor(view, member)); err != nil {
		return err
	}
	if err := store.Publish(ctx, member, Report{Time: have, At: now.UnixNano(), Membership: ms}); err != nil {
		return fmt.Errorf("coupling: finishing the add of %s at its own time %d: %w", member, have, err)
	}
	return nil
}

// ErrJournaledBehind is the refusal to finish an add whose moment the
// store forgot (ErrAddForgotten) while the member's secondary has
// journaled less than the others' time.
var ErrJournaledBehind = errors.New("its secondary has not journaled through the others' time yet")

// journaledBehind says why member, whose add was cut short before it gave
// it its floor and whose moment the store forgot, cannot be counted at
// have, what its secondary journaled through, while the others' least
// time is f; nil once it can. group names the group when the member's
// own secondary says so.
func journaledBehind(member, group string, have, f int64) error {
	if have >= f {
		return nil
	}
	in := ""
	if group != "" {
		in = fmt.Sprintf(" to group %q", group)
	}
	// 0 is no time at all (the member's secondary never published one),
	// which as a stamp would read as a journal through 1970.
	through := "it journaled through " + stamp(have)
	if have == 0 {
		through = "it has published no time"
	}
	return fmt.Errorf("coupling: session %s's add%s ended before it gave the session its floor, and %w; "+
		"its writes since the add are coupled with the others' (their master time waits for it), and %w: "+
		"%s, the others are at %s. Its secondary, running, finishes the add once it journaled past that "+
		"(start it if it is stopped, resume its pair if it is suspended). "+
		"Only if its secondary cannot catch up: duplex couple remove --config FILE %s lets the others apply without it, "+
		"and its writes since the add are then coupled with none of theirs",
		member, in, ErrAddForgotten, ErrJournaledBehind, through, stamp(f), member)
}

// stamp is t for an operator: RFC 3339 in UTC, to the nanosecond.
func stamp(t int64) string { return time.Unix(0, t).UTC().Format(time.RFC3339Nano) }
