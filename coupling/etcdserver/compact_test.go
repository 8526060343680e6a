package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/coupling"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestPublishingOutlivesQuota: members publishing their times every
// round write etcd a new revision of two keys each time; an etcd that
// keeps all its history fills its database with them until it reaches
// its quota, raises NOSPACE and refuses every write, and every coupled
// session's master time holds for good. Here the quota is 1 MiB and the
// members publish several times what it holds: the embedded etcd must
// compact its history, its database reusing the pages compaction freed,
// and take every publication.
func TestPublishingOutlivesQuota(t *testing.T) {
	retention := 100 * time.Millisecond
	if os.Getenv("DUPLEX_ETCD_KEEP_ALL") != "" {
		retention = 0 // shows the growth without compaction
	}
	e := startLimited(t, limits{quota: quota, retention: retention, noFsync: true})
	stores := e.members(t, 4)
	// Publications at the pace of the members' rounds (each 20 ms),
	// naming a membership of 1,000 bytes (their own name 24) for fewer of
	// them to fill the quota: one adds about 2,400 bytes to etcd's
	// database while nothing is compacted (DUPLEX_ETCD_KEEP_ALL=1 fails
	// the test where it filled the quota). Published: twice what the
	// quota holds uncompacted.
	n := 2 * quota / 2400 / len(stores)
	big := strings.Repeat("m", 1000)
	pace := paced(t, len(stores), 20*time.Millisecond, time.Time{})
	start := time.Now()
	if err := publish(stores, big, pace, n); err != nil {
		size, inUse := e.size(t)
		t.Fatalf("after %v (db %d bytes, %d in use; quota %d): %v", time.Since(start), size, inUse, quota, err)
	}
	size, inUse := e.size(t)
	t.Logf("after %d publications in %v: db %d bytes, %d in use (quota %d)", len(stores)*n, time.Since(start), size, inUse, quota)
}

// TestNoSpaceSaysSo: an etcd whose database reached its quota refuses the
// publications, and the error says so (ErrNoSpace), not that etcd is
// unreachable: it answers, and the master time holds until an operator
// makes room, which a member's status says how to; done so, the member's
// next round publishes again and holds nothing.
func TestNoSpaceSaysSo(t *testing.T) {
	e := startLimited(t, limits{quota: quota, noFsync: true})
	ctx := context.Background()
	stores := e.members(t, 1)
	if err := coupling.Add(ctx, stores[0], "m0", time.Now()); err != nil {
		t.Fatal(err)
	}
	// Filled at once, by history of values of 64 KiB, rather than by as
	// many publications. The database grows, and the quota is checked
	// against it, as etcd commits its batch (every 100 ms): on an idle
	// machine twice the quota is put before the first commit. So the
	// puts go on until etcd refuses one, and one taken once the database
	// is past the quota fails the test.
	fill := strings.Repeat("x", 64<<10)
	var err error
	for size, deadline := int64(0), time.Now().Add(time.Minute); ; {
		if _, err = e.cli.Put(ctx, "/fill", fill); err != nil {
			break
		}
		if size > quota {
			t.Fatalf("etcd of a %d-byte quota took a put with its database at %d bytes", quota, size)
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd of a %d-byte quota took puts of %d bytes for a minute, its database at %d bytes", quota, len(fill), size)
		}
		size, _ = e.size(t)
	}
	err = publish(stores, membership, func(int) bool { return true }, 1)
	if !errors.Is(err, coupling.ErrNoSpace) || errors.Is(err, coupling.ErrUnreachable) {
		t.Fatalf("publishing past the quota: %v, want ErrNoSpace", err)
	}
	c, err := coupling.New(coupling.Config{Store: stores[0], Group: "g", Member: "m0", Own: time.Now().UnixNano, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	c.Round(ctx)
	if st := c.Status(); !strings.Contains(st.Held, "out of space") || !strings.Contains(st.Held, "alarm disarm") {
		t.Fatalf("a member's round with etcd out of space: held %q, want it said that etcd is out of space and what makes room", st.Held)
	} else {
		t.Log(st.Held)
	}

	// What status says: compact, defragment, disarm.
	resp, err := e.cli.Get(ctx, "/fill")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli.Defragment(ctx, e.client); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: resp.Header.MemberId, Alarm: etcdserverpb.AlarmType_NOSPACE}); err != nil {
		t.Fatal(err)
	}
	c.Round(ctx)
	if st := c.Status(); st.Held != "" {
		size, inUse := e.size(t)
		t.Fatalf("a member's round once etcd was compacted, defragmented and its alarm disarmed (db %d bytes, %d in use): held %q", size, inUse, st.Held)
	}
}

// TestCompactedDatabaseStopsGrowing measures what the quota counts of a
// database compacted as duplex etcd compacts its own, at the scale of
// seconds: DUPLEX_ETCD_RETENTION (4s) in place of an hour, four members
// publishing each 20 ms as their rounds do, for DUPLEX_ETCD_WINDOW (60s).
// A measurement, run with DUPLEX_BENCH=1; it asserts nothing.
func TestCompactedDatabaseStopsGrowing(t *testing.T) {
	if os.Getenv("DUPLEX_BENCH") == "" {
		t.Skip("a measurement: run with DUPLEX_BENCH=1")
	}
	retention, window := 4*time.Second, time.Minute
	for name, d := range map[string]*time.Duration{"DUPLEX_ETCD_RETENTION": &retention, "DUPLEX_ETCD_WINDOW": &window} {
		if s := os.Getenv(name); s != "" {
			v, err := time.ParseDuration(s)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			*d = v
		}
	}
	e := startLimited(t, limits{retention: retention, noFsync: true})
	stores := e.members(t, 4)
	end := time.Now().Add(window)
	pace := paced(t, len(stores), 20*time.Millisecond, end)
	done := make(chan error, 1)
	go func() { done <- publish(stores, membership, pace, int(window/(20*time.Millisecond))) }()
	start := time.Now()
	for time.Now().Before(end) {
		time.Sleep(retention / 2)
		st, err := e.cli.Status(context.Background(), e.client)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%5.1fs revision %6d: db %8d bytes, %8d in use", time.Since(start).Seconds(), st.Header.Revision, st.DbSize, st.DbSizeInUse)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

const quota = 1 << 20

// limited is an embedded etcd of limits and a client of it.
type limited struct {
	client string
	cli    *clientv3.Client
}

func startLimited(t *testing.T, lim limits) *limited {
	t.Helper()
	client, peer := freeURL(t), freeURL(t)
	srv, err := start(t.TempDir(), client, peer, "error", os.Stderr, lim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return &limited{client: client, cli: cli}
}

// size is the database's size, which the quota counts, and the part of it
// in use.
func (e *limited) size(t *testing.T) (size, inUse int64) {
	st, err := e.cli.Status(context.Background(), e.client)
	if err != nil {
		t.Fatal(err)
	}
	return st.DbSize, st.DbSizeInUse
}

// members returns n stores of group g, member m0, m1...'s.
func (e *limited) members(t *testing.T, n int) []*coupling.EtcdStore {
	stores := make([]*coupling.EtcdStore, n)
	for i := range stores {
		s, err := coupling.DialEtcd(coupling.EtcdConfig{Group: "g", Endpoints: []string{e.client}, Lease: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores[i] = s
	}
	return stores
}

// paced returns publish's next for n members publishing each every, each
// on a ticker of its own, until end (zero: no end).
func paced(t *testing.T, n int, every time.Duration, end time.Time) func(int) bool {
	ticks := make([]*time.Ticker, n)
	for i := range ticks {
		ticks[i] = time.NewTicker(every)
		t.Cleanup(ticks[i].Stop)
	}
	return func(i int) bool {
		<-ticks[i].C
		return end.IsZero() || time.Now().Before(end)
	}
}

// membership is as long as the name of one.
const membership = "0123456789abcdef01234567"

// publish has each member publish its time up to n times, all at once,
// each while next(its index) says to, naming membership ms, and returns
// the first error.
func publish(stores []*coupling.EtcdStore, ms string, next func(int) bool, n int) error {
	var wg sync.WaitGroup
	errs := make([]error, len(stores))
	for i, st := range stores {
		wg.Go(func() {
			for k := 0; k < n && errs[i] == nil && next(i); k++ {
				now := time.Now().UnixNano()
				errs[i] = st.Publish(context.Background(), "m"+strconv.Itoa(i),
					coupling.Report{Time: now, At: now, Journaled: now, Membership: ms})
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("member m%d: %w", i, err)
		}
	}
	return nil
}
