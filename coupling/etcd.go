package coupling

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdConfig says how to reach the group's etcd.
type EtcdConfig struct {
	Group     string
	Endpoints []string
	TLS       *tls.Config // nil: plain http
	Username  string
	Password  string
	// Lease is how long a member's alive key outlives its last renewal.
	Lease time.Duration
}

// EtcdStore is the Store of a group kept in etcd.
type EtcdStore struct {
	cli    *clientv3.Client
	prefix string
	ttl    int64 // seconds

	mu      sync.Mutex
	lease   clientv3.LeaseID
	renewed time.Time
	// timeRev is the mod revision of each member's time key as this
	// store last wrote or read it (Publish), timeMs the membership that
	// key named then.
	timeRev map[string]int64
	timeMs  map[string]string

	// w keeps the group's keys for Follow.
	w watched
	// ranges counts Follow's reads of the whole range (tests).
	ranges atomic.Int64
}

// Prefix is where a group's keys live.
func Prefix(group string) string { return "/duplex/coupling/" + group + "/" }

// DialEtcd returns a Store of cfg.Group. It dials lazily: an etcd down now
// fails the calls, not DialEtcd, and the client reconnects by itself.
func DialEtcd(cfg EtcdConfig) (*EtcdStore, error) {
	ttl := int64(cfg.Lease / time.Second)
	if ttl < 2 {
		ttl = 10
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: cfg.Endpoints, TLS: cfg.TLS, Username: cfg.Username, Password: cfg.Password,
		DialTimeout: 2 * time.Second, DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second,
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("coupling: etcd %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return &EtcdStore{cli: cli, prefix: Prefix(cfg.Group), ttl: ttl, timeRev: map[string]int64{}, timeMs: map[string]string{}}, nil
}

func unreachable(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, rpctypes.ErrNoSpace) {
		return fmt.Errorf("%w: %v", ErrNoSpace, err)
	}
	return fmt.Errorf("%w: %v", ErrUnreachable, err)
}

// Read implements Store.
func (e *EtcdStore) Read(ctx context.Context) (View, error) {
	kvs, _, err := e.rangeKeys(ctx)
	if err != nil {
		return View{}, err
	}
	return viewOf(e.prefix, kvs)
}

// rangeKeys reads every key of the group, and the revision they are as of.
func (e *EtcdStore) rangeKeys(ctx context.Context) (map[string][]byte, int64, error) {
	resp, err := e.cli.Get(ctx, e.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, unreachable(err)
	}
	return keysOf(resp.Kvs), resp.Header.Revision, nil
}

// leaseFor returns a lease that holds, renewing it a third of its TTL after
// the last renewal, or granting a new one once it expired.
func (e *EtcdStore) leaseFor(ctx context.Context) (clientv3.LeaseID, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lease != 0 && time.Since(e.renewed) < time.Duration(e.ttl)*time.Second/3 {
		return e.lease, nil
	}
	if e.lease != 0 {
		_, err := e.cli.KeepAliveOnce(ctx, e.lease)
		if err == nil {
			e.renewed = time.Now()
			return e.lease, nil
		}
		if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return 0, unreachable(err)
		}
	}
	g, err := e.cli.Grant(ctx, e.ttl)
	if err != nil {
		return 0, unreachable(err)
	}
	e.lease, e.renewed = g.ID, time.Now()
	return e.lease, nil
}

// Publish implements Store: the time key without a lease (a silent
// member's last time must stay and hold the master time), the alive key
// under the member's lease. The time is put only if the key is as this
// store last wrote or read it (its mod revision); otherwise it is read
// and a later time there is kept (and a later Journaled, and the
// membership it names unless r names one): another process (duplex couple add
// giving the member its floor) may have written it since this one's
// caller read the group.
func (e *EtcdStore) Publish(ctx context.Context, member string, r Report) error {
	id, err := e.leaseFor(ctx)
	if err != nil {
		return err
	}
	key := e.prefix + "time/" + member
	e.mu.Lock()
	rev, ms := e.timeRev[member], e.timeMs[member]
	e.mu.Unlock()
	named := r.Membership
	for {
		r.Membership = mergeMembership(named, ms)
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		resp, err := e.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(
			clientv3.OpPut(key, string(b)),
			clientv3.OpPut(e.prefix+"alive/"+member, "", clientv3.WithLease(id)),
		).Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				e.mu.Lock()
				e.lease = 0
				e.mu.Unlock()
			}
			return unreachable(err)
		}
		if resp.Succeeded {
			e.mu.Lock()
			e.timeRev[member], e.timeMs[member] = resp.Header.Revision, r.Membership
			e.mu.Unlock()
			return nil
		}
		rev, ms = 0, ""
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			rev = kvs[0].ModRevision
			var held Report
			if err := json.Unmarshal(kvs[0].Value, &held); err != nil {
				return fmt.Errorf("coupling: etcd key %s: %w", key, err)
			}
			r.Time, r.Journaled = max(r.Time, held.Time), max(r.Journaled, held.Journaled)
			ms = held.Membership
		}
	}
}

// AddMember implements Store, by a transaction that creates the key only
// if it does not exist: two adds of one session at once make one
// membership, not one that the other's replaces.
func (e *EtcdStore) AddMember(ctx context.Context, member string) error {
	_, err := e.AddMemberView(ctx, member)
	return err
}

// AddMemberView implements Store: the group is read in the transaction
// that makes the member, or, a member already, as of the revision that
// made it (AddedView).
func (e *EtcdStore) AddMemberView(ctx context.Context, member string) (View, error) {
	key := e.prefix + "member/" + member
	all := clientv3.OpGet(e.prefix, clientv3.WithPrefix())
	resp, err := e.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, newMembership()), all).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return View{}, unreachable(err)
	}
	if !resp.Succeeded {
		return e.addedAt(ctx, member, resp.Responses[0].GetResponseRange().GetKvs())
	}
	return viewOf(e.prefix, keysOf(resp.Responses[1].GetResponseRange().GetKvs()))
}

// AddedView implements Store: the group as of the revision that created
// the member's key, which etcd keeps until a compaction passes it.
func (e *EtcdStore) AddedView(ctx context.Context, member string) (View, error) {
	resp, err := e.cli.Get(ctx, e.prefix+"member/"+member)
	if err != nil {
		return View{}, unreachable(err)
	}
	return e.addedAt(ctx, member, resp.Kvs)
}

// addedAt is the group as of the revision that created the member key
// kvs holds (none: not a member).
func (e *EtcdStore) addedAt(ctx context.Context, member string, kvs []*mvccpb.KeyValue) (View, error) {
	if len(kvs) == 0 {
		return View{}, fmt.Errorf("coupling: %s: %w", member, ErrNotMember)
	}
	resp, err := e.cli.Get(ctx, e.prefix, clientv3.WithPrefix(), clientv3.WithRev(kvs[0].CreateRevision))
	if errors.Is(err, rpctypes.ErrCompacted) {
		return View{}, fmt.Errorf("coupling: %s added at revision %d: %w", member, kvs[0].CreateRevision, ErrAddForgotten)
	}
	if err != nil {
		return View{}, unreachable(err)
	}
	return viewOf(e.prefix, keysOf(resp.Kvs))
}

// keysOf is kvs by key.
func keysOf(kvs []*mvccpb.KeyValue) map[string][]byte {
	m := make(map[string][]byte, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

// newMembership returns a name no membership had before.
func newMembership() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// RemoveMember implements Store.
func (e *EtcdStore) RemoveMember(ctx context.Context, member string) error {
	_, err := e.cli.Delete(ctx, e.prefix+"member/"+member)
	return unreachable(err)
}

// Leave implements Store, by one transaction on the membership's value.
// A membership older than these values is "", which a new one never is.
func (e *EtcdStore) Leave(ctx context.Context, member, membership string) error {
	_, err := e.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(e.prefix+"member/"+member), "=", membership)).Then(
		clientv3.OpDelete(e.prefix+"member/"+member),
		clientv3.OpDelete(e.prefix+"time/"+member),
		clientv3.OpDelete(e.prefix+"alive/"+member),
	).Commit()
	return unreachable(err)
}

// FixRecovery implements Store, by a transaction that creates the key
// only if it does not exist.
func (e *EtcdStore) FixRecovery(ctx context.Context, t int64) (int64, error) {
	return e.setRecovery(ctx, clientv3.Compare(clientv3.CreateRevision(e.prefix+"recovery"), "=", 0), t)
}

// ReplaceRecovery implements Store, by a transaction that puts t only if
// the key holds old.
func (e *EtcdStore) ReplaceRecovery(ctx context.Context, old, t int64) (int64, error) {
	return e.setRecovery(ctx, clientv3.Compare(clientv3.Value(e.prefix+"recovery"), "=", strconv.FormatInt(old, 10)), t)
}

// setRecovery puts t as the recovery time if cond holds, and returns the
// one that holds.
func (e *EtcdStore) setRecovery(ctx context.Context, cond clientv3.Cmp, t int64) (int64, error) {
	key := e.prefix + "recovery"
	resp, err := e.cli.Txn(ctx).If(cond).Then(clientv3.OpPut(key, strconv.FormatInt(t, 10))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return 0, unreachable(err)
	}
	if resp.Succeeded {
		return t, nil
	}
	return recoveryOf(key, resp)
}

// recoveryOf is the recovery time a transaction's Else read.
func recoveryOf(key string, resp *clientv3.TxnResponse) (int64, error) {
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return 0, fmt.Errorf("coupling: etcd key %s vanished", key)
	}
	fixed, err := strconv.ParseInt(string(kvs[0].Value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("coupling: etcd key %s: %w", key, err)
	}
	return fixed, nil
}

// Close implements Store.
func (e *EtcdStore) Close() error {
	e.stopWatch()
	return e.cli.Close()
}
