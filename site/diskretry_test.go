package site

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/disk"
	"duplex/internal/testenv"
)

// secondaryVol1OnAFailingDisk is a session of volumes of size bytes whose
// secondary vol1 is a block device: a loop device over a disk that fails
// with EIO on demand.
func secondaryVol1OnAFailingDisk(t *testing.T, size int64) (*config.Config, *failingDisk) {
	t.Helper()
	cfg := linkConfig(t)
	cfg.Primary.SidefileLimit = 16 * config.MiB
	for i := range cfg.Primary.Subsystems {
		for j := range cfg.Primary.Subsystems[i].Volumes {
			cfg.Primary.Subsystems[i].Volumes[j].Size = config.Size(size)
		}
	}
	d := newFailingDisk(t, size)
	dev := testenv.LoopDeviceOn(t, d.path, 512)
	for i := range cfg.Secondary.Volumes {
		if cfg.Secondary.Volumes[i].Name == "vol1" {
			cfg.Secondary.Volumes[i].Path = dev
		}
	}
	return cfg, d
}

// replicatedBeforeTheFault writes size bytes of 0x11 at the start of vol1
// and vol2 once every pair is duplex, and waits for the secondary (sec
// gives the one running) to hold them.
func replicatedBeforeTheFault(t *testing.T, p *Primary, sec func() *Secondary, size int) {
	t.Helper()
	waitFor(t, 30*time.Second, "every pair duplex", func() bool { return allPairsDuplex(p.Status()) })
	for _, vol := range []string{"vol1", "vol2"} {
		if err := p.Write(context.Background(), vol, bytes.Repeat([]byte{0x11}, size), 0); err != nil {
			t.Fatal(err)
		}
	}
	quiesceMover(t, p)
	waitFor(t, 30*time.Second, "both volumes replicated before the fault", func() bool {
		return sameBytes(t, p, sec(), "vol1", size) && sameBytes(t, p, sec(), "vol2", size)
	})
}

// TestASecondaryResumesByItselfOnceItsDiskWorks: the secondary's disk
// fails under a group (a volume's write, direct or through the page cache
// and found by the checkpoint's fdatasync; the journal's fsync), and the
// secondary stops; status says it retries, with the disk's error, and
// when. Once the disk works again, with no restart and no other step, it
// closes what the fault may have poisoned, opens the journal and the
// volumes again, applies the failed group again from the journal, links,
// and both volumes end as the primary's, status clean.
func TestASecondaryResumesByItselfOnceItsDiskWorks(t *testing.T) {
	const size = 4 << 20
	for _, tc := range []struct {
		name    string
		n       int  // bytes written to vol1 while the disk fails
		journal bool // the journal's fsync fails, not vol1's disk
	}{
		{"a 4 MiB run to a volume, direct", 4 << 20, false},
		{"a 4 KiB write to a volume, through the page cache", 4096, false},
		{"the journal's fsync", 4096, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, failing := secondaryVol1OnAFailingDisk(t, size)
			cfg.Secondary.Control = "127.0.0.1:0"
			in := disk.NewInjector(nil)
			logs := &logBuffer{}
			var cur atomic.Pointer[Secondary]
			opened := make(chan struct{}, 1)
			runUntil(t, func(ctx context.Context) {
				_, err := RunSecondary(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)), SecondaryOptions{FS: in},
					DiskRetry{First: 100 * time.Millisecond, Max: 400 * time.Millisecond},
					func(s *Secondary) {
						cur.Store(s)
						select {
						case opened <- struct{}{}:
						default:
						}
					})
				if err != nil {
					t.Errorf("RunSecondary: %v", err)
				}
			})
			<-opened
			// A config of its own: the secondary's sites read theirs.
			pcfg := *cfg
			pcfg.Primary.Secondary = cur.Load().ListenAddr()
			p, _ := startPrimary(t, &pcfg, healthyReadWait)
			replicatedBeforeTheFault(t, p, cur.Load, size)
			ctx := context.Background()

			want := "input/output error"
			if tc.journal {
				in.Inject(disk.Fault{Op: disk.OpSync, Under: cfg.Secondary.Journal, Err: disk.EIO})
			} else {
				failing.fail(t, true)
			}
			if err := p.Write(ctx, "vol1", bytes.Repeat([]byte{0x22}, tc.n), 0); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 30*time.Second, "status to say the secondary retries after the disk's error", func() bool {
				r := cur.Load().Status().DiskRetry
				return r != nil && r.Attempt >= 1 && strings.Contains(r.Error, want) && r.Next != ""
			})
			t.Logf("retrying: %+v", *cur.Load().Status().DiskRetry)
			waitFor(t, 30*time.Second, "the primary to report that the secondary retries", func() bool {
				return strings.Contains(p.Status().LastError, "retries")
			})
			// Some attempts on the failing disk.
			// A reader while it retries gets vol1 at a group boundary, or
			// an error (the site closed under it, or opening), never part
			// of the failed group.
			before, after := bytes.Repeat([]byte{0x11}, size), bytes.Repeat([]byte{0x11}, size)
			copy(after, bytes.Repeat([]byte{0x22}, tc.n))
			got := make([]byte, size)
			waitFor(t, 30*time.Second, "a second attempt", func() bool {
				if err := cur.Load().ReadAt("vol1", got, 0); err == nil && !bytes.Equal(got, before) && !bytes.Equal(got, after) {
					t.Fatalf("the secondary serves vol1 with part of the failed write while it retries")
				}
				return len(logs.lines("disk fault", "attempt=2")) > 0
			})
			// Status is served by the control address between the attempts
			// too, while no site is open.
			ctl := control.Endpoint{Addr: cur.Load().ControlAddr()}
			waitFor(t, 30*time.Second, "the control address to say the secondary retries, attempt 2 or later", func() bool {
				st, err := control.Fetch(ctx, ctl)
				return err == nil && st.DiskRetry != nil && st.DiskRetry.Attempt >= 2 && st.Stopped != ""
			})
			if err := p.Write(ctx, "vol2", bytes.Repeat([]byte{0x33}, 4096), 0); err != nil {
				t.Fatalf("a write to vol2 at the primary while the secondary retries: %v", err)
			}

			if tc.journal {
				in.Clear()
			} else {
				failing.fail(t, false)
			}
			waitFor(t, time.Minute, "every pair duplex once the disk works, with no restart", func() bool { return allPairsDuplex(p.Status()) })
			quiesceMover(t, p)
			for _, vol := range []string{"vol1", "vol2"} {
				waitFor(t, 30*time.Second, "the secondary's "+vol+" to be the primary's", func() bool { return sameBytes(t, p, cur.Load(), vol, size) })
			}
			waitFor(t, 30*time.Second, "status clean", func() bool {
				st := cur.Load().Status()
				return st.Stopped == "" && st.DiskRetry == nil
			})
		})
	}
}
