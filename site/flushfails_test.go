package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/config"
	"duplex/control"
	"duplex/disk"
	"duplex/nbd"
	"duplex/transport"
)

// flushFailing starts a primary, draining for up to drain at its stop,
// whose flushes of vol1 fail with EIO while failing is set: a writeback
// error, which the kernel reports only at a later fsync, the write itself
// having passed.
func flushFailing(t *testing.T, cfg *config.Config, drain time.Duration, fsys disk.FS) (*Primary, *flushFault, func() error) {
	t.Helper()
	failing := &flushFault{}
	p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), PrimaryOptions{
		Dialer: linkDialer(t, cfg), CopyReadWait: healthyReadWait, FS: fsys,
		beforeFlush: func(vol string) error {
			if vol != "vol1" {
				return nil
			}
			if failing.Load() || failing.once.CompareAndSwap(true, false) {
				return disk.EIO
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	var runErr error
	stop := runUntil(t, func(ctx context.Context) { runErr = p.Run(ctx, drain) })
	waitFor(t, 30*time.Second, "every pair duplex", func() bool { return allPairsDuplex(p.Status()) })
	return p, failing, func() error { stop(); return runErr }
}

// flushFault fails vol1's flushes while set. once fails the next flush
// only: the kernel reports a writeback error to one fsync, and the next
// passes.
type flushFault struct {
	atomic.Bool
	once atomic.Bool
}

// TestAFlushThatFailsKeepsTheRegionOfAnAcknowledgedWrite: vol1 is duplex,
// and its flushes fail. A write to vol1 is acknowledged, and the
// secondary journals it; the activity log is to unmark the region once
// idle, which it may do only once the write is on the primary's disk. The
// flush fails: vol1 is suspended, saying why, the region to copy again,
// rather than left duplex, unmarked, with a copy the primary's disk may
// not hold. Once the flushes pass again, a resume copies it.
func TestAFlushThatFailsKeepsTheRegionOfAnAcknowledgedWrite(t *testing.T) {
	cfg := linkConfig(t)
	s, _ := runSecondary(t, cfg)
	cfg.Primary.Secondary = s.ListenAddr()
	p, failing, _ := flushFailing(t, cfg, 0, nil)

	failing.Store(true)
	if err := p.Write(context.Background(), "vol1", bytes.Repeat([]byte{0x78}, 4096), 8192); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "vol1 reported suspended, with the flush's error", func() bool {
		v := volumeStatus(p.Status(), "vol1")
		return v.State == "suspended" && strings.Contains(v.Reason, "input/output error")
	})
	if n := p.actlog.Marked(); n == 0 {
		t.Fatal("vol1 suspended for a failed flush, and the activity log marks nothing")
	}
	// The failed flush's regions are handed over once: no later clean
	// flushes vol1 for them again, nor suspends it again after its resume.
	failing.Store(false)
	p.Pairs().SuspendFailedWrites()
	resumesToTheSecondary(t, p, s, []string{"vol1"}, []string{"vol1", "vol2"})
}

// TestAFlushThatFailsAtACleanStopLeavesThePairToCopy: vol1's flushes fail,
// and the primary is stopped cleanly just after a write to vol1. The
// stop's flush of the volume fails: the pair state must not be saved clean
// and duplex over data that may not be on the disk. Restarted, its
// flushes passing, vol1 is suspended for it, and a resume makes the
// secondary's vol1 the primary's.
func TestAFlushThatFailsAtACleanStopLeavesThePairToCopy(t *testing.T) {
	cfg := linkConfig(t)
	s, _ := runSecondary(t, cfg)
	cfg.Primary.Secondary = s.ListenAddr()
	p, failing, stop := flushFailing(t, cfg, 30*time.Second, nil)

	failing.Store(true)
	if err := p.Write(context.Background(), "vol1", bytes.Repeat([]byte{0x78}, 4096), 8192); err != nil {
		t.Fatal(err)
	}
	t.Logf("the stop: %v", stop())

	p, _ = startPrimary(t, cfg, healthyReadWait)
	waitFor(t, 10*time.Second, "vol1, restarted after a stop whose flush of it failed, reported suspended", func() bool {
		return volumeStatus(p.Status(), "vol1").State == "suspended"
	})
	resumesToTheSecondary(t, p, s, []string{"vol1"}, []string{"vol1", "vol2"})
}

// TestAClientFlushThatFailsSuspendsThePair: vol1 is duplex, and an NBD
// client's write to it is acknowledged. The client's FLUSH (or the write's
// FUA) fails, once: a writeback error, which the kernel reports to that
// fdatasync alone, so the activity log's next flush of vol1 passes. The
// region must not then be unmarked with the pair left duplex: the
// primary's disk may not hold what the secondary journaled (here the disk
// lost the write). vol1 is suspended, saying why, and a resume copies the
// region again, making the secondary's vol1 the primary's. Without the
// activity log, nothing says which regions: the whole of vol1 is copied.
func TestAClientFlushThatFailsSuspendsThePair(t *testing.T) {
	old := actlog.Idle
	actlog.Idle = time.Second
	t.Cleanup(func() { actlog.Idle = old })
	for _, tc := range []struct {
		name       string
		fua, noLog bool
	}{{"FLUSH", false, false}, {"FUA", true, false}, {"FLUSH without the activity log", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			fua := tc.fua
			cfg := linkConfig(t)
			cfg.Primary.NBD = "127.0.0.1:0"
			s, _ := runSecondary(t, cfg)
			cfg.Primary.Secondary = s.ListenAddr()
			var fsys disk.FS
			if tc.noLog {
				inj := disk.NewInjector(nil)
				inj.Inject(disk.Fault{Op: disk.OpCreate, Under: filepath.Join(PairStateDir(cfg), "activity.log")})
				fsys = inj
			}
			p, failing, _ := flushFailing(t, cfg, 0, fsys)
			if tc.noLog != (p.actlog == nil) {
				t.Fatalf("the primary runs with an activity log: %v", p.actlog != nil)
			}
			c, err := nbd.Dial(p.NBDAddr(), "vol1")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			// Nothing due to be unmarked: the log's own flush of vol1
			// cannot take the one failure the client's flush is to see.
			if p.actlog != nil {
				waitFor(t, 30*time.Second, "the activity log to mark nothing", func() bool { return p.actlog.Marked() == 0 })
			}

			data := bytes.Repeat([]byte{0x78}, 4096)
			if fua {
				failing.once.Store(true)
				err = c.WriteAtFUA(data, 8192)
			} else if err = c.WriteAt(data, 8192); err == nil {
				failing.once.Store(true)
				err = c.Flush()
			}
			if err == nil {
				t.Fatal("the client's flush passed")
			}
			// The write the flush failed for never reached the disk.
			if err := p.vols["vol1"].WriteAt(make([]byte, len(data)), 8192); err != nil {
				t.Fatal(err)
			}

			suspended := func() bool {
				v := volumeStatus(p.Status(), "vol1")
				return v.State == "suspended" && strings.Contains(v.Reason, "input/output error")
			}
			for end := time.Now().Add(5 * actlog.Idle); !suspended(); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(end) {
					t.Fatalf("%s after the client's flush failed (%v): vol1 %q, the secondary's vol1 the primary's: %v",
						5*actlog.Idle, err, volumeStatus(p.Status(), "vol1").State, sameVolume(t, p, s, "vol1"))
				}
			}
			t.Logf("vol1 suspended: %s", volumeStatus(p.Status(), "vol1").Reason)
			p.Pairs().SuspendFailedWrites()
			resumesToTheSecondary(t, p, s, []string{"vol1"}, []string{"vol1", "vol2"})
		})
	}
}

// TestAClientFlushThatFailsAtThePromotedSiteSuspendsThePair: the promoted
// site, the primary of the reverse direction once the old primary
// rejoined, serves NBD as any primary: a client's FLUSH of vol1 that
// fails there suspends the reverse direction's vol1 with its regions.
func TestAClientFlushThatFailsAtThePromotedSiteSuspendsThePair(t *testing.T) {
	old := actlog.Idle
	actlog.Idle = time.Second
	t.Cleanup(func() { actlog.Idle = old })
	cfg := rejoinConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, _, prim, stopSec, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{})
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(prim.Status()) })
	stopPrim()
	stopSec()
	if _, _, _, err := Promote(context.Background(), cfg, quiet, nil); err != nil {
		t.Fatal(err)
	}
	rev := transport.NewMemNetwork(2, transport.Faults{})
	var once atomic.Bool
	opts := linkOptions(rev)
	opts.beforeFlush = func(vol string) error {
		if vol == "vol1" && once.CompareAndSwap(true, false) {
			return disk.EIO
		}
		return nil
	}
	b, err := OpenReversePrimary(cfg, quiet, opts)
	if err != nil {
		t.Fatal(err)
	}
	runLinked(t, b)
	_, r, _ := rejoinAt(t, cfg, quiet, b, rev, SecondaryOptions{})
	if _, err := b.rejoin()(control.RejoinRequest{Generation: r.Generation, Volumes: r.Discarded}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "every pair of the reverse direction duplex", func() bool { return allPairsDuplex(b.Status()) })
	waitFor(t, 30*time.Second, "the activity log to mark nothing", func() bool { return b.actlog.Marked() == 0 })
	c := clientWroteVol1(t, b.NBDAddr(), 0x78)
	once.Store(true)
	if err := c.Flush(); err == nil {
		t.Fatal("the client's flush passed")
	}
	waitFor(t, 5*actlog.Idle, "the reverse direction's vol1 suspended with the flush's error", func() bool {
		v := volumeStatus(b.Status(), "vol1")
		return v.State == "suspended" && strings.Contains(v.Reason, "input/output error")
	})
}

// clientWroteVol1 dials the NBD export vol1 at addr, writes 4 KiB of fill
// at 8192 through it, and returns the client, closed when the test ends.
func clientWroteVol1(t *testing.T, addr string, fill byte) *nbd.Client {
	t.Helper()
	c, err := nbd.Dial(addr, "vol1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WriteAt(bytes.Repeat([]byte{fill}, 4096), 8192); err != nil {
		t.Fatal(err)
	}
	return c
}
