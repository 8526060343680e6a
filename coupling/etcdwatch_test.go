package coupling

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// followUntil calls Follow until cond holds of its view, or fails after a
// minute.
func followUntil(t *testing.T, ctx context.Context, s *EtcdStore, what string, cond func(View, error) bool) View {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		v, err := s.Follow(fctx)
		cancel()
		if cond(v, err) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within a minute: %s (last view %+v, %v)", what, v, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Follow keeps the group from a watch on its prefix: after its first
// read of the range, a member sees the others' publications, membership
// changes and expired leases without reading the range again; its own
// writes are in the next view it gets; an etcd that stops is reported
// unreachable, as by Read, and once it is back the watch starts again.
func TestEtcdStoreFollowsTheGroupByAWatch(t *testing.T) {
	e := startEtcd(t)
	a, b := e.dial(t, 2*time.Second), e.dial(t, 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, m := range []string{"a", "b"} {
		if err := a.AddMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := b.Follow(ctx); err != nil || len(v.Members) != 2 {
		t.Fatalf("first view %+v, %v; want members a and b", v, err)
	}
	if got := b.ranges.Load(); got != 1 {
		t.Fatalf("%d reads of the range for the first view, want 1", got)
	}

	if err := a.Publish(ctx, "a", Report{Time: 42, At: 7}); err != nil {
		t.Fatal(err)
	}
	followUntil(t, ctx, b, "a's publication seen by b", func(v View, err error) bool {
		return err == nil && v.Reports["a"] == (Report{Time: 42, At: 7}) && v.Alive["a"]
	})
	// Its own write: in the very next view.
	if err := b.Publish(ctx, "b", Report{Time: 40, At: 8}); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Follow(ctx); err != nil || v.Reports["b"].Time != 40 {
		t.Fatalf("b's view right after its own publication: %+v, %v", v, err)
	}
	if err := a.RemoveMember(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	followUntil(t, ctx, b, "b removed and a's lease expired, seen by b", func(v View, err error) bool {
		return err == nil && len(v.Members) == 1 && v.Members[0] == "a" && !v.Alive["a"] && v.Reports["a"].Time == 42
	})
	if got := b.ranges.Load(); got != 1 {
		t.Errorf("%d reads of the range while the watch kept the group, want 1", got)
	}
	// Against Read, which reads it all.
	if v, err := b.Read(ctx); err != nil || len(v.Members) != 1 || v.Reports["a"].Time != 42 || v.Reports["b"].Time != 40 || v.Alive["a"] {
		t.Fatalf("Read: %+v, %v", v, err)
	}

	e.stop()
	followUntil(t, ctx, b, "etcd down reported unreachable", func(v View, err error) bool { return errors.Is(err, ErrUnreachable) })
	e.start(t)
	followUntil(t, ctx, a, "a publishes after etcd came back", func(View, error) bool {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		defer pcancel()
		return a.Publish(pctx, "a", Report{Time: 43, At: 9}) == nil
	})
	followUntil(t, ctx, b, "a's publication after etcd came back, seen by b", func(v View, err error) bool {
		return err == nil && v.Reports["a"].Time == 43
	})
}

// heldAfterGet is an etcd store's KV whose next Get, once armed, returns
// only after it took the store's watched keys' lock for hold: the delay a
// Follow meets between its read of the keys' names and its wait for the
// watch when the watch applies a batch of events meanwhile, or the
// scheduler does not run it.
type heldAfterGet struct {
	clientv3.KV
	s     *EtcdStore
	hold  time.Duration
	armed atomic.Bool
}

func (k *heldAfterGet) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	resp, err := k.KV.Get(ctx, key, opts...)
	if k.armed.CompareAndSwap(true, false) {
		locked := make(chan struct{})
		go func() {
			k.s.w.mu.Lock()
			close(locked)
			time.Sleep(k.hold)
			k.s.w.mu.Unlock()
		}()
		<-locked
	}
	return resp, err
}

// A Follow whose watch does not bring the keys put since its revision
// reads the range a second after it began to wait, however late it got
// to its wait: the wait ended on the timer alone, and a timer that fired
// before the wait's end as the wait reckoned it (the wait started late)
// left it waiting for the watch until its ctx ended, and the round held
// as if etcd were unreachable.
func TestAFollowWhoseWatchLagsReadsTheRangeHoweverLateItsWaitBegan(t *testing.T) {
	e := startEtcd(t)
	s, cli := e.dial(t, 10*time.Second), e.dial(t, 10*time.Second)
	lag := lagWatch(s)
	defer lag.release()
	held := &heldAfterGet{KV: s.cli.KV, s: s, hold: catchUpWait / 2}
	s.cli.KV = held
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cli.AddMember(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Follow(ctx); err != nil {
		t.Fatal(err)
	}
	lag.hold()
	if err := cli.AddMember(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	held.armed.Store(true)
	fctx, fcancel := context.WithTimeout(ctx, 20*catchUpWait)
	defer fcancel()
	v, err := s.Follow(fctx)
	if err != nil || !slices.Contains(v.Members, "x") {
		t.Fatalf("Follow with the watch held: %+v, %v; want the group from the range, x in it", v, err)
	}
}

// stopAfterGet is an etcd store's KV whose next Get, once armed, stops
// etcd before it returns: etcd gone between a Follow's read of the range
// and the watch it starts after it.
type stopAfterGet struct {
	clientv3.KV
	stop func()
}

func (k *stopAfterGet) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	resp, err := k.KV.Get(ctx, key, opts...)
	if stop := k.stop; stop != nil {
		k.stop = nil
		stop()
	}
	return resp, err
}

// A Follow returns within its ctx when etcd goes after it read the range
// and before the watch it starts then is open: the watch was started under
// the watched keys' lock, and clientv3's Watch waits for its stream to
// open for as long as its own ctx, which ends only with the store: the
// round waited for as long as etcd was gone, holding its own lock (a
// switchover's leave waited behind it, past its bound) and reporting
// nothing held.
func TestAFollowReturnsWhenEtcdGoesBeforeItsWatchIsOpen(t *testing.T) {
	e := startEtcd(t)
	s, err := DialEtcd(EtcdConfig{Group: "g", Endpoints: []string{e.client}, Lease: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.AddMember(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	s.cli.KV = &stopAfterGet{KV: s.cli.KV, stop: e.stop}
	follow := func(what string, ok func(View, error) bool) {
		t.Helper()
		fctx, fcancel := context.WithTimeout(ctx, 2*catchUpWait)
		defer fcancel()
		type result struct {
			v   View
			err error
		}
		done := make(chan result, 1)
		go func() {
			v, err := s.Follow(fctx)
			done <- result{v, err}
		}()
		select {
		case r := <-done:
			if !ok(r.v, r.err) {
				t.Fatalf("%s: %+v, %v", what, r.v, r.err)
			}
		case <-time.After(2*catchUpWait + 20*time.Second):
			// etcd back lets the Follow go, and the store close.
			e.start(t)
			t.Fatalf("%s: Follow did not return 20s after its ctx ended", what)
		}
	}
	follow("the range read before etcd went: the group", func(v View, err error) bool {
		return err == nil && slices.Contains(v.Members, "a")
	})
	follow("etcd gone: unreachable", func(_ View, err error) bool { return errors.Is(err, ErrUnreachable) })
}

// openLate is an etcd store's Watcher whose next watch, once armed, is
// opened only when released: a watch that reaches etcd after a compaction
// passed the revision it starts from, as one resumed after a lost stream
// does, or one whose opening waited for etcd. compacted records etcd's
// cancelling it for that.
type openLate struct {
	clientv3.Watcher
	armed     atomic.Bool
	gate      chan struct{}
	compacted atomic.Bool
}

func (w *openLate) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	if !w.armed.CompareAndSwap(true, false) {
		return w.Watcher.Watch(ctx, key, opts...)
	}
	select {
	case <-w.gate:
	case <-ctx.Done():
	}
	in := w.Watcher.Watch(ctx, key, opts...)
	out := make(chan clientv3.WatchResponse)
	go func() {
		defer close(out)
		for resp := range in {
			if resp.CompactRevision != 0 {
				w.compacted.Store(true)
			}
			select {
			case out <- resp:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// A watch that etcd cancels for a compaction past its revision ends, and
// a Follow waiting on it for a key put since reads the range then: the
// publication made before the compaction is in its view, and the watch it
// starts from the range keeps the group again (the next publication seen
// without a read of the range).
func TestAFollowWhoseWatchWasCompactedReadsTheRange(t *testing.T) {
	e := startEtcd(t)
	s, cli := e.dial(t, 10*time.Second), e.dial(t, 10*time.Second)
	late := &openLate{Watcher: s.cli.Watcher, gate: make(chan struct{})}
	s.cli.Watcher = late
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cli.AddMember(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	late.armed.Store(true)
	if v, err := s.Follow(ctx); err != nil || len(v.Members) != 1 {
		t.Fatalf("first view %+v, %v; want member a", v, err)
	}
	// The watch from the range's revision is not open yet: publications,
	// then a compaction past the first of them (the watch's first
	// revision).
	for i := range int64(2) {
		if err := cli.Publish(ctx, "a", Report{Time: 41 + i, At: 7}); err != nil {
			t.Fatal(err)
		}
	}
	forget(ctx, t, cli)
	// The watch opens once the Follow read which keys were put since its
	// revision, to wait for it to bring them.
	s.cli.KV = &stopAfterGet{KV: s.cli.KV, stop: func() { close(late.gate) }}
	v, err := s.Follow(ctx)
	if err != nil || v.Reports["a"].Time != 42 {
		t.Fatalf("Follow once its watch was compacted: %+v, %v; want a's last publication (42)", v, err)
	}
	if !late.compacted.Load() {
		t.Errorf("the watch was not cancelled for the compaction past its revision: the test did not make what it tests")
	}
	ranges := s.ranges.Load()
	if err := cli.Publish(ctx, "a", Report{Time: 43, At: 8}); err != nil {
		t.Fatal(err)
	}
	followUntil(t, ctx, s, "a's next publication seen", func(v View, err error) bool {
		return err == nil && v.Reports["a"].Time == 43
	})
	if got := s.ranges.Load(); got != ranges {
		t.Errorf("%d reads of the range after the watch started again, want none: the watch keeps the group", got-ranges)
	}
}
