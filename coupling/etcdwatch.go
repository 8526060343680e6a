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
	"google.golang.org/grpc/connectivity"
)

// Follower is a Store that can keep the group in memory: Follow reads it
// as Read does, but from the keys a watch on the group's prefix keeps
// current, so a member's every round costs etcd no range over every
// member's keys. Every member reads every round, so with a range the bytes
// etcd sends grow with the square of the group; with the watch, each
// publication is sent once to each member.
type Follower interface {
	Follow(ctx context.Context) (View, error)
}

// watched is the group's keys as the watch keeps them. A view from them
// can only be older than etcd's: the times in it are never later, so the
// master time computed from it is never past the group's.
type watched struct {
	mu     sync.Mutex
	cond   *sync.Cond
	kvs    map[string][]byte // by key
	rev    int64             // the revision they are current through
	live   bool              // a watch keeps them
	cancel context.CancelFunc
}

// ownWait bounds how long Follow waits for the watch to bring this
// store's own last write before it reads the range instead.
const ownWait = time.Second

// Follow implements Follower. It reads the range (Read) when no watch
// keeps the keys, when the client is not connected (etcd down is then
// reported as unreachable, as by Read, not hidden behind the last keys
// seen), and when the watch has not brought this store's own last write
// within a second; the range's keys then start a watch from the revision
// after them.
func (e *EtcdStore) Follow(ctx context.Context) (View, error) {
	e.w.mu.Lock()
	if e.w.cond == nil {
		e.w.cond = sync.NewCond(&e.w.mu)
	}
	connected := e.cli.ActiveConnection().GetState() == connectivity.Ready
	if e.w.live && connected {
		written := e.written.Load()
		if e.w.rev < written {
			t := time.AfterFunc(ownWait, func() { e.w.mu.Lock(); e.w.cond.Broadcast(); e.w.mu.Unlock() })
			for end := time.Now().Add(ownWait); e.w.live && e.w.rev < written && time.Now().Before(end) && ctx.Err() == nil; {
				e.w.cond.Wait()
			}
			t.Stop()
		}
		if e.w.live && e.w.rev >= written {
			v, err := viewOf(e.prefix, e.w.kvs)
			e.w.mu.Unlock()
			return v, err
		}
	}
	e.w.mu.Unlock()
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

// watchLocked starts a watch of the prefix after rev over kvs, the keys
// as of rev, in place of any before it. Called with e.w.mu held.
func (e *EtcdStore) watchLocked(kvs map[string][]byte, rev int64) {
	if e.w.cancel != nil {
		e.w.cancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.w.kvs, e.w.rev, e.w.live, e.w.cancel = kvs, rev, true, cancel
	ch := e.cli.Watch(clientv3.WithRequireLeader(ctx), e.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	go func() {
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
			}
			e.w.rev = max(e.w.rev, resp.Header.Revision)
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
