package coupling

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"duplex/coupling/etcdserver"
	"duplex/internal/testenv"
)

// freeURL is an http URL on a reserved port (testenv.FreeAddr) for an etcd
// to listen on: it binds later, and again when a test restarts it.
func freeURL(t *testing.T) string {
	t.Helper()
	return "http://" + testenv.FreeAddr(t)
}

// TestEtcdStore runs the Store against a real etcd, embedded: membership,
// publications, the alive key's lease, the recovery time fixed once, and
// an etcd that stops and comes back.
func TestEtcdStore(t *testing.T) {
	e := startEtcd(t)
	store, err := DialEtcd(EtcdConfig{Group: "g", Endpoints: []string{e.client}, Lease: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, m := range []string{"b", "a"} {
		if err := store.AddMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Publish(ctx, "a", Report{Time: 42, At: 7}); err != nil {
		t.Fatal(err)
	}
	v, err := store.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Members) != 2 || v.Members[0] != "a" || v.Reports["a"] != (Report{Time: 42, At: 7}) || !v.Alive["a"] || v.Alive["b"] {
		t.Fatalf("view %+v", v)
	}
	if got, err := store.FixRecovery(ctx, 40); err != nil || got != 40 {
		t.Fatalf("FixRecovery(40) = %d, %v", got, err)
	}
	if got, err := store.FixRecovery(ctx, 41); err != nil || got != 40 {
		t.Fatalf("FixRecovery(41) after 40 = %d, %v; want 40 kept", got, err)
	}
	if got, err := store.ReplaceRecovery(ctx, 39, 45); err != nil || got != 40 {
		t.Fatalf("ReplaceRecovery(39, 45) with 40 fixed = %d, %v; want 40 kept", got, err)
	}
	if got, err := store.ReplaceRecovery(ctx, 40, 44); err != nil || got != 44 {
		t.Fatalf("ReplaceRecovery(40, 44) with 40 fixed = %d, %v; want 44", got, err)
	}
	if got, err := store.ReplaceRecovery(ctx, 40, 40); err != nil || got != 44 {
		t.Fatalf("ReplaceRecovery(40, 40) with 44 fixed = %d, %v; want 44 kept", got, err)
	}
	if _, err := store.ReplaceRecovery(ctx, 44, 40); err != nil {
		t.Fatal(err)
	}
	if err := store.RemoveMember(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	// A member that leaves takes its time and alive key with it.
	if err := store.AddMember(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := store.Publish(ctx, "c", Report{Time: 50, At: 9}); err != nil {
		t.Fatal(err)
	}
	if v, err = store.Read(ctx); err != nil {
		t.Fatal(err)
	}
	if err := store.Leave(ctx, "c", v.Memberships["c"]); err != nil {
		t.Fatal(err)
	}
	if v, err = store.Read(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Reports["c"]; ok || v.Alive["c"] || len(v.Members) != 1 {
		t.Fatalf("after c left: %+v", v)
	}

	// Silent past the lease: the alive key goes, the time stays.
	deadline := time.Now().Add(time.Minute)
	for {
		v, err = store.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Alive["a"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the alive key outlived its 2s lease by a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v.Reports["a"].Time != 42 || len(v.Members) != 1 || v.Recovery != 40 {
		t.Fatalf("after the lease expired: %+v; want a's time 42 kept, b removed, recovery 40", v)
	}

	// etcd down: every call fails as unreachable within its context.
	e.stop()
	short, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = store.Read(short)
	scancel()
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("read with etcd down: %v, want ErrUnreachable", err)
	}
	// Back, on the same data: a new lease is granted for the next publication.
	e.start(t)
	deadline = time.Now().Add(time.Minute)
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		err = store.Publish(pctx, "a", Report{Time: 43, At: 8})
		pcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish after etcd came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v, err = store.Read(ctx); err != nil || v.Reports["a"].Time != 43 || !v.Alive["a"] {
		t.Fatalf("after etcd came back: %+v, %v", v, err)
	}
}

// onEachStore runs test as a subtest on the in-memory store and on an
// embedded etcd: a member's store and another process's (duplex couple),
// the same MemStore, two clients of the etcd.
func onEachStore(t *testing.T, test func(t *testing.T, store, cli Store)) {
	t.Run("mem", func(t *testing.T) { s := NewMemStore(); test(t, s, s) })
	t.Run("etcd", func(t *testing.T) {
		e := startEtcd(t)
		test(t, e.dial(t, 10*time.Second), e.dial(t, 10*time.Second))
	})
}

// testEtcd is an embedded etcd that a test stops and starts again on its
// data.
type testEtcd struct {
	dir, client, peer string
	srv               *etcdserver.Server
}

// startEtcd starts an embedded etcd, stopped when the test ends.
func startEtcd(t *testing.T) *testEtcd {
	t.Helper()
	e := &testEtcd{dir: filepath.Join(t.TempDir(), "etcd"), client: freeURL(t), peer: freeURL(t)}
	e.start(t)
	t.Cleanup(e.stop)
	return e
}

// start starts it, again on the same data and addresses after stop.
func (e *testEtcd) start(t *testing.T) {
	t.Helper()
	srv, err := etcdserver.Start(e.dir, e.client, e.peer, "error", os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
}

// dial returns a store of group g on it, of lease, closed when the test
// ends.
func (e *testEtcd) dial(t *testing.T, lease time.Duration) *EtcdStore {
	t.Helper()
	s, err := DialEtcd(EtcdConfig{Group: "g", Endpoints: []string{e.client}, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (e *testEtcd) stop() {
	if e.srv != nil {
		e.srv.Close()
		e.srv = nil
	}
}
