package coupling

import (
	"context"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// laggingWatch holds what an etcd store's watch delivers for as long as a
// test needs: the watch's lag behind etcd, which is otherwise a matter
// of timing. Of a MemStore, which has no watch, it holds nothing.
type laggingWatch struct {
	clientv3.Watcher
	mu   sync.Mutex
	gate chan struct{} // nil while delivering; closed when released
}

// lagWatch puts a laggingWatch under store's watches, before its first.
func lagWatch(store Store) *laggingWatch {
	w := &laggingWatch{}
	if e, ok := store.(*EtcdStore); ok {
		w.Watcher = e.cli.Watcher
		e.cli.Watcher = w
	}
	return w
}

func (w *laggingWatch) hold() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gate == nil {
		w.gate = make(chan struct{})
	}
}

func (w *laggingWatch) release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gate != nil {
		close(w.gate)
		w.gate = nil
	}
}

func (w *laggingWatch) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	in := w.Watcher.Watch(ctx, key, opts...)
	out := make(chan clientv3.WatchResponse)
	go func() {
		defer close(out)
		for resp := range in {
			w.mu.Lock()
			gate := w.gate
			w.mu.Unlock()
			if gate != nil {
				select {
				case <-gate:
				case <-ctx.Done():
					return
				}
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

// A round that runs after another process's duplex couple add returned
// must count the member it added. A client writes A to the new member x
// once the add returned, and, A acknowledged, B to member b, which
// depends on it; b's secondary journals B and publishes past it. b's
// limit must stay within x's time (the floor the add gave it, which x's
// secondary journaled nothing past), or b applies B while the group's
// recovery time is before A. On etcd the rounds read the group from a
// watch, which may not have brought the add yet: held here, b's round
// took the group without x and raised b's limit to its own time.
func TestARoundCountsAMemberWhoseAddReturnedBeforeIt(t *testing.T) {
	onEachStore(t, func(t *testing.T, store, cli Store) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		clk := &clock{}
		clk.t.Store(1e18)
		lag := lagWatch(store)
		defer lag.release()
		b := applyingAlone(ctx, t, store, clk, "b", 100)
		// b's watch has brought everything so far, its own publication too.
		if f, ok := store.(Follower); ok {
			if _, err := f.Follow(ctx); err != nil {
				t.Fatal(err)
			}
		}
		lag.hold()
		if err := Add(ctx, cli, "x", clk.now()); err != nil {
			t.Fatal(err)
		}
		// A (150) on x, then B (180) on b, journaled by b's secondary
		// with what followed it.
		b.own.Store(200)
		b.c.Round(ctx)
		v, err := cli.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if x := v.Reports["x"].Time; b.limit() > x {
			t.Errorf("b's limit %d, past x's time %d after x's add returned (the round saw members %v): "+
				"b applies B (180) while x's secondary does not hold A (150), which B depends on",
				b.limit(), x, b.c.Status().Members)
		}
	})
}
