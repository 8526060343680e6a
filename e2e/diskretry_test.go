package e2e

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"duplex/consistency"
	"duplex/disk"
	"duplex/internal/testenv"
	"duplex/pair"
	"duplex/site"
	"duplex/transport"
	"duplex/workload"
)

// TestDependentWritesSecondaryRetriesDiskFaults: the secondary's journal
// fails (ENOSPC on a write, EIO on an fsync) under the dependent-write
// workload, and the secondary runs under site.RunSecondary, which closes
// and opens it again, as a restart does, until the fault clears. At every
// group applied, by each site opened, the replays included, the secondary
// holds no write without one it depends on; the primary's writes go on;
// once the fault clears replication resumes with no restart, and the
// images end equal.
func TestDependentWritesSecondaryRetriesDiskFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range journalFaults {
		t.Run(tc.name, func(t *testing.T) {
			// A fault that lasts suspends the session after a second with
			// the sidefile full; the resync once it clears is held.
			cfg := newOpsConfig(t, 4<<20, 1<<20, time.Second)
			l := workload.Layout{Volumes: len(cfg.VolumeNames()), BlocksPerVolume: 256, Clients: 4}
			names := cfg.VolumeNames()
			var bad violations
			logs := &testenv.LogBuffer{}
			in := disk.NewInjector(nil)
			opts := site.SecondaryOptions{FS: in, Listener: transport.NewMemNetwork(4, transport.Faults{}),
				OnApplied: func(g *consistency.Group, read func(string, []byte, int64) error) {
					// Readers are excluded: one read is the image.
					img, vs, err := workload.ReadImage(l, func(v int, p []byte, off int64) error { return read(names[v], p, off) })
					if err == nil {
						vs = append(vs, img.Violations(img, workload.Scope{})...)
					}
					bad.add(g.Number, vs, err)
				}}
			s := &opsSession{t: t, cfg: cfg, net: opts.Listener.(*transport.MemNetwork)}
			sites := make(chan *site.Secondary, 64)
			ctx, cancel := context.WithCancel(context.Background())
			ended := make(chan error, 1)
			go func() {
				_, err := site.RunSecondary(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)), opts, site.DiskRetry{First: 50 * time.Millisecond, Max: 200 * time.Millisecond},
					func(x *site.Secondary) { sites <- x })
				ended <- err
			}()
			s.sec = <-sites
			s.startPrimary()
			t.Cleanup(func() {
				s.stopPrimary()
				cancel()
				if err := <-ended; err != nil {
					t.Errorf("RunSecondary: %v", err)
				}
			})
			for _, name := range names {
				s.waitState(name, pair.Duplex, time.Minute)
			}
			ld := startStorageLoad(s, l)
			waitFor(t, time.Minute, "writes replicating before the fault", func() bool {
				return ld.acked.Load() > 200 && s.sec.Replica().Stats().GroupsApplied > 10
			})

			in.Inject(disk.Fault{Op: tc.op, Under: cfg.Secondary.Journal, Err: tc.err})
			waitFor(t, time.Minute, "the secondary to stop and say it retries", func() bool {
				r := s.sec.Status().DiskRetry
				return r != nil && strings.Contains(r.Error, tc.want)
			})
			waitFor(t, time.Minute, "three attempts, the journal failing", func() bool {
				return strings.Count(logs.String(), "disk fault") >= 3
			})
			before := ld.acked.Load()
			waitFor(t, 30*time.Second, "writes to go on at the primary while the secondary retries", func() bool {
				return ld.acked.Load() > before+50
			})
			if in.Injected(tc.op) == 0 {
				t.Fatalf("the %s fault never fired", tc.op)
			}

			in.Clear()
			// Opened again until one runs past the fault.
			groups := s.sec.Replica().Stats().GroupsApplied
			for deadline := time.Now().Add(time.Minute); s.sec.Replica().Stats().GroupsApplied <= groups+10; {
				if time.Now().After(deadline) {
					t.Fatalf("no 10 groups applied in a minute once the journal works: %+v", s.sec.Status().DiskRetry)
				}
				select {
				case s.sec = <-sites:
					groups = 0
				case <-time.After(100 * time.Millisecond):
				}
			}
			ld.stop(t)
			for _, name := range names {
				s.waitState(name, pair.Duplex, time.Minute)
			}
			if st := s.sec.Status(); st.Stopped != "" || st.DiskRetry != nil {
				t.Errorf("the secondary still says it stopped (%q) or retries (%+v)", st.Stopped, st.DiskRetry)
			}
			n, vs := bad.snapshot()
			if len(vs) > 0 {
				t.Fatalf("%d dependent-write violations in %d groups checked, first %s", len(vs), n, vs[0])
			}
			t.Logf("%d groups checked, %d writes acknowledged", n, ld.acked.Load())
			s.stopPrimary()
			acked := s.prim.Mover().Stats().Acked.Group
			waitFor(t, 30*time.Second, "the last group applied", func() bool { return s.sec.Replica().Stats().Group >= acked })
			cancel()
			if err := <-ended; err != nil {
				t.Errorf("RunSecondary: %v", err)
			}
			ended <- nil
			for _, name := range names {
				pv, _, _ := cfg.PrimaryVolume(name)
				sv, _ := cfg.SecondaryVolume(name)
				if !sameFiles(t, pv.Path, sv.Path) {
					t.Errorf("%s: secondary image differs from the primary", name)
				}
			}
		})
	}
}
