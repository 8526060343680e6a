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
	if _, err := publishPastQuota(t, retention); err != nil {
		t.Fatal(err)
	}
}

// TestNoSpaceSaysSo: an etcd that keeps all its history refuses the
// publications once its database reached its quota, and the error says
// so (ErrNoSpace), not that etcd is unreachable: it answers, and the
// master time holds until an operator makes room.
func TestNoSpaceSaysSo(t *testing.T) {
	client, err := publishPastQuota(t, 0)
	if !errors.Is(err, coupling.ErrNoSpace) || errors.Is(err, coupling.ErrUnreachable) {
		t.Fatalf("publishing past the quota of an etcd keeping all its history: %v, want ErrNoSpace", err)
	}
	store, err := coupling.DialEtcd(coupling.EtcdConfig{Group: "g", Endpoints: []string{client}, Lease: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	c, err := coupling.New(coupling.Config{Store: store, Group: "g", Member: "m0", Own: time.Now().UnixNano, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	c.Round(context.Background())
	if st := c.Status(); !strings.Contains(st.Held, "out of space") || !strings.Contains(st.Held, "alarm disarm") {
		t.Fatalf("a member's round with etcd out of space: held %q, want it said that etcd is out of space and what makes room", st.Held)
	} else {
		t.Log(st.Held)
	}
}

const quota = 1 << 20

// publishPastQuota publishes, from four members at once, twice what an
// etcd of a 1 MiB quota holds uncompacted, into one keeping retention of
// its history (0: all), and returns the first publication's error.
func publishPastQuota(t *testing.T, retention time.Duration) (client string, err error) {
	client, peer := freeURL(t), freeURL(t)
	srv, err := start(t.TempDir(), client, peer, "error", os.Stderr, limits{quota: quota, retention: retention, noFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	status := func() (size, inUse int64) {
		st, err := cli.Status(context.Background(), client)
		if err != nil {
			t.Fatal(err)
		}
		return st.DbSize, st.DbSizeInUse
	}

	const members = 4
	stores := make([]*coupling.EtcdStore, members)
	for i := range stores {
		if stores[i], err = coupling.DialEtcd(coupling.EtcdConfig{Group: "g", Endpoints: []string{client}, Lease: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
		defer stores[i].Close()
	}
	publish := func(from, n int) error {
		var wg sync.WaitGroup
		errs := make([]error, members)
		for i, st := range stores {
			wg.Go(func() {
				for k := from; k < from+n && errs[i] == nil; k++ {
					now := time.Now().UnixNano()
					errs[i] = st.Publish(context.Background(), "m"+strconv.Itoa(i), coupling.Report{Time: now, At: now, Journaled: now, Membership: "0123456789abcdef01234567"})
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
	// A publication adds 250-350 bytes to etcd's database while nothing
	// is compacted (DUPLEX_ETCD_KEEP_ALL=1 fails the test where it filled
	// the quota): publish twice what the quota holds uncompacted.
	const n = 2 * quota / 250 / members
	start := time.Now()
	for k := 0; k < n; k += 100 {
		if err := publish(k, 100); err != nil {
			size, inUse := status()
			return client, fmt.Errorf("after %d publications (db %d bytes, %d in use; quota %d): %w", members*k, size, inUse, quota, err)
		}
	}
	size, inUse := status()
	t.Logf("after %d publications in %v: db %d bytes, %d in use (quota %d)", members*n, time.Since(start), size, inUse, quota)
	return client, nil
}
