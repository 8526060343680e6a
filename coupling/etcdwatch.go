package coupling

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Follower is a Store that can keep the group in memory: Follow reads it
// as Read does, but from the keys a watch on the group's prefix keeps
// current, so a member's every round costs etcd no range over every
// member's keys. Every member reads every round, so with a range the bytes
// etcd sends grow with the square of the group; with the watch, each
// publication is sent once to each member. Like Read's, Follow's view
// holds every write made before it was called; a key deleted since may
// still be in it.
type Follower interface {
	Follow(ctx context.Context) (View, error)
}

// watched is the group's keys as the watch keeps them. A view from them
// can only be older than etcd's: the times in it are never later, and a
// key deleted may still be there (a member removed, a lease expired),
// which only holds the master time lower. What it may lack is a key put
// since, a member added above all, which Follow asks etcd about.
type watched struct {
	mu   sync.Mutex
	cond *sync.Cond
	kvs  map[string][]byte // by key
	// rev is the revision the keys are current through: the range's
	// they started from, then the last event's (not the responses'
	// header, which etcd may send ahead of events it holds back for
	// a watch far behind).
	rev    int64
	live   bool // a watch keeps them
	cancel context.CancelFunc
}

// catchUpWait bounds how long Follow waits for the watch to bring the
// keys etcd says were put since, before it reads the range instead.
const catchUpWait = time.Second

// Follow implements Follower. Its view holds every key put before it was
// called: a member's round that reads no member added by a duplex couple
// add that already returned would raise its limit past the added one's
// time, and apply a write that depended on one of that member's not yet
// journaled. So it first asks etcd, in a linearizable read, which keys
// were put since the watch's revision (their names only, most often none
// or the few publications on their way in the watch), and waits for the
// watch to bring them. It reads the range (Read) instead when no watch
// keeps the keys, or when the watch has not brought them within a
// second; the range's keys then start a watch from the revision after
// them. etcd unreachable fails that read, and the round holds the limit
// as when a range cannot be read.
func (e *EtcdStore) Follow(ctx context.Context) (View, error) {
	e.w.mu.Lock()
	if e.w.cond == nil {
		e.w.cond = sync.NewCond(&e.w.mu)
	}
	live, rev := e.w.live, e.w.rev
	e.w.mu.Unlock()
	if live {
		resp, err := e.cli.Get(ctx, e.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithMinModRev(rev+1))
		if err != nil {
			return View{}, unreachable(err)
		}
		var put int64
		for _, kv := range resp.Kvs {
			put = max(put, kv.ModRevision)
		}
		if v, ok, err := e.caughtUp(ctx, put); ok {
			return v, err
		}
	}
	e.ranges.Add(1)
	kvs, rev, err := e.rangeKeys(ctx)
	if err != nil {
		return View{}, err
	}
	v, err := viewOf(e.prefix, kvs)
	if err != nil {
		return View{}, err
	}
	e.w.mu.Lock()
	if !e.w.live || e.w.rev < rev {
		e.watchLocked(kvs, rev)
	}
	e.w.mu.Unlock()
	return v, nil
}

// caughtUp returns the view of the watched keys once the watch has
// brought every event through revision put, and false if it has not
// within catchUpWait or ctx, or ended.
func (e *EtcdStore) caughtUp(ctx context.Context, put int64) (View, bool, error) {
	// The timer alone ends the wait, by what it sets: a deadline of the
	// wait's own, reckoned once it got the lock, could be later than the
	// timer, and nothing would wake it then but the watch or ctx.
	late := false
	t := time.AfterFunc(catchUpWait, func() { e.w.mu.Lock(); late = true; e.w.cond.Broadcast(); e.w.mu.Unlock() })
	defer t.Stop()
	defer context.AfterFunc(ctx, func() { e.w.mu.Lock(); e.w.cond.Broadcast(); e.w.mu.Unlock() })()
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	for e.w.live && e.w.rev < put && !late && ctx.Err() == nil {
		e.w.cond.Wait()
	}
	if !e.w.live || e.w.rev < put {
		return View{}, false, nil
	}
	v, err := viewOf(e.prefix, e.w.kvs)
	return v, true, err
}

// watchLocked starts a watch of the prefix after rev over kvs, the keys
// as of rev, in place of any before it. Called with e.w.mu held. The
// watch is opened by its goroutine, not under the lock: clientv3's Watch
// waits for its stream to open for as long as its ctx, which ends only
// when a newer watch replaces it or the store closes, and etcd gone
// meanwhile would hold Follow, and the round, until it is back. Until
// the watch brings anything, Follow reads what changed from the range.
func (e *EtcdStore) watchLocked(kvs map[string][]byte, rev int64) {
	if e.w.cancel != nil {
		e.w.cancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.w.kvs, e.w.rev, e.w.live, e.w.cancel = kvs, rev, true, cancel
	go func() {
		ch := e.cli.Watch(clientv3.WithRequireLeader(ctx), e.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		defer func() {
			e.w.mu.Lock()
			// Only the watch's own state: a newer one may have replaced it.
			if e.w.cancel != nil && ctx.Err() == nil {
				e.w.live = false
			}
			e.w.cond.Broadcast()
			e.w.mu.Unlock()
			cancel()
		}()
		for resp := range ch {
			if resp.Err() != nil || resp.Canceled {
				// Compacted past it, or no leader: the next Follow reads
				// the range and watches again.
				return
			}
			e.w.mu.Lock()
			if ctx.Err() != nil {
				e.w.mu.Unlock()
				return
			}
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypeDelete {
					delete(e.w.kvs, string(ev.Kv.Key))
				} else {
					e.w.kvs[string(ev.Kv.Key)] = ev.Kv.Value
				}
				e.w.rev = max(e.w.rev, ev.Kv.ModRevision)
			}
			e.w.cond.Broadcast()
			e.w.mu.Unlock()
		}
	}()
}

// stopWatch ends the watch: Close.
func (e *EtcdStore) stopWatch() {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	if e.w.cancel != nil {
		e.w.cancel()
		e.w.cancel, e.w.live = nil, false
	}
}

// viewOf is the View of the group's keys under prefix.
func viewOf(prefix string, kvs map[string][]byte) (View, error) {
	v := View{Reports: map[string]Report{}, Alive: map[string]bool{}, Memberships: map[string]string{}}
	for key, value := range kvs {
		kind, name, _ := strings.Cut(strings.TrimPrefix(key, prefix), "/")
		switch kind {
		case "member":
			v.Members = append(v.Members, name)
			v.Memberships[name] = string(value)
		case "alive":
			v.Alive[name] = true
		case "time":
			var r Report
			if err := json.Unmarshal(value, &r); err != nil {
				return View{}, fmt.Errorf("coupling: etcd key %s: %w", key, err)
			}
			v.Reports[name] = r
		case "recovery":
			t, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil {
				return View{}, fmt.Errorf("coupling: etcd key %s: %w", key, err)
			}
			v.Recovery = t
		}
	}
	sort.Strings(v.Members)
	return v, nil
}
