package coupling

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"
)

// MemStore is an in-memory Store, shared by the Couplers of a test: one per
// group. Down makes every call fail as an unreachable etcd does; leases
// expire by the clock Now (default the wall clock).
type MemStore struct {
	mu       sync.Mutex
	down     bool
	members  map[string]string // by member, its membership
	added    map[string]View   // by member, the group as of its add
	reports  map[string]Report
	alive    map[string]time.Time // lease expiry
	recovery int64
	// TTL is the lease of life (default 10s); Now the clock leases use.
	TTL time.Duration
	Now func() time.Time
	// Publishes counts the successful publications, Reads the reads.
	Publishes, Reads int
}

// NewMemStore returns an empty group.
func NewMemStore() *MemStore {
	return &MemStore{members: map[string]string{}, added: map[string]View{}, reports: map[string]Report{}, alive: map[string]time.Time{}, TTL: 10 * time.Second}
}

// SetDown makes the store unreachable (true) or reachable again.
func (m *MemStore) SetDown(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = down
}

func (m *MemStore) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *MemStore) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	if m.down {
		return fmt.Errorf("%w: connection refused (in-memory store down)", ErrUnreachable)
	}
	return nil
}

// Read implements Store.
func (m *MemStore) Read(ctx context.Context) (View, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return View{}, err
	}
	m.Reads++
	return m.viewLocked(), nil
}

func (m *MemStore) viewLocked() View {
	v := View{Reports: map[string]Report{}, Alive: map[string]bool{}, Memberships: map[string]string{}, Recovery: m.recovery}
	for name, ms := range m.members {
		v.Members = append(v.Members, name)
		v.Memberships[name] = ms
	}
	sort.Strings(v.Members)
	for name, r := range m.reports {
		v.Reports[name] = r
	}
	now := m.now()
	for name, exp := range m.alive {
		if now.Before(exp) {
			v.Alive[name] = true
		}
	}
	return v
}

// Publish implements Store.
func (m *MemStore) Publish(ctx context.Context, member string, r Report) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	m.Publishes++
	r.Time = max(r.Time, m.reports[member].Time)
	r.Journaled = max(r.Journaled, m.reports[member].Journaled)
	r.Membership = mergeMembership(r.Membership, m.reports[member].Membership)
	m.reports[member] = r
	m.alive[member] = m.now().Add(m.TTL)
	return nil
}

// Set puts member's report as it is, lowering its time if it must: a
// test's member whose time falls behind, which Publish never lets happen.
func (m *MemStore) Set(member string, r Report) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reports[member] = r
	m.alive[member] = m.now().Add(m.TTL)
}

// AddMember implements Store.
func (m *MemStore) AddMember(ctx context.Context, member string) error {
	_, err := m.AddMemberView(ctx, member)
	return err
}

// AddMemberView implements Store.
func (m *MemStore) AddMemberView(ctx context.Context, member string) (View, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return View{}, err
	}
	if _, ok := m.members[member]; !ok {
		m.members[member] = newMembership()
		m.added[member] = m.viewLocked()
	}
	return m.addedLocked(member)
}

// AddedView implements Store.
func (m *MemStore) AddedView(ctx context.Context, member string) (View, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return View{}, err
	}
	return m.addedLocked(member)
}

func (m *MemStore) addedLocked(member string) (View, error) {
	if _, ok := m.members[member]; !ok {
		return View{}, fmt.Errorf("coupling: %s: %w", member, ErrNotMember)
	}
	v, ok := m.added[member]
	if !ok {
		return View{}, fmt.Errorf("coupling: %s: %w", member, ErrAddForgotten)
	}
	// The caller's to change.
	v.Members = slices.Clone(v.Members)
	v.Reports, v.Alive, v.Memberships = maps.Clone(v.Reports), maps.Clone(v.Alive), maps.Clone(v.Memberships)
	return v, nil
}

// Forget drops what the store holds of the group as of each add, as an
// etcd compaction does.
func (m *MemStore) Forget() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.added)
}

// RemoveMember implements Store.
func (m *MemStore) RemoveMember(ctx context.Context, member string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	delete(m.members, member)
	delete(m.added, member)
	return nil
}

// Leave implements Store.
func (m *MemStore) Leave(ctx context.Context, member, membership string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	if ms, ok := m.members[member]; !ok || ms != membership {
		return nil
	}
	delete(m.members, member)
	delete(m.added, member)
	delete(m.reports, member)
	delete(m.alive, member)
	return nil
}

// FixRecovery implements Store.
func (m *MemStore) FixRecovery(ctx context.Context, t int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return 0, err
	}
	if m.recovery == 0 {
		m.recovery = t
	}
	return m.recovery, nil
}

// ReplaceRecovery implements Store.
func (m *MemStore) ReplaceRecovery(ctx context.Context, old, t int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return 0, err
	}
	if m.recovery == old {
		m.recovery = t
	}
	return m.recovery, nil
}

// Close implements Store.
func (m *MemStore) Close() error { return nil }

// Expire ends member's lease of life at once, as if it had been silent
// for longer than the lease.
func (m *MemStore) Expire(member string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.alive, member)
}

// MembersNow returns the members, for tests.
func (m *MemStore) MembersNow() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for name := range m.members {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
