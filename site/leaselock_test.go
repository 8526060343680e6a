package site

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"duplex/disk"
)

// TestAStopsHungLeaseRenameHoldsTheStateDirectory: the rename of a
// renewal of the timer's lease hangs on the state directory's disk (its
// write and fsync done). The stop gives the lease up and goes on; the
// rename, in the kernel, lands once the disk answers. Until then the
// state directory stays locked: a primary started meanwhile in the same
// process would write marks that the late rename replaces with a lower
// one, below the stamps it handed out (its next start, after a crash,
// would stamp below them). Once the rename has landed, a start goes on
// from above every stamp of both runs.
func TestAStopsHungLeaseRenameHoldsTheStateDirectory(t *testing.T) {
	cfg, _, dialer := linkedSecondary(t)
	h := newStateDiskHang()
	t.Cleanup(h.release)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	open := func(fsys disk.FS) (*Primary, error) {
		return OpenPrimary(cfg, log, PrimaryOptions{Dialer: dialer,
			FS: fsys, stopFlushWait: time.Second, slowDisk: 200 * time.Millisecond})
	}
	p1, err := open(h.fs)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := runUntil(t, func(ctx context.Context) { p1.Run(ctx, 10*time.Second) })
	waitFor(t, 30*time.Second, "every pair duplex", func() bool { return allPairsDuplex(p1.Status()) })
	lease := filepath.Join(p1.stateDir, "timer.json")
	h.fs.Inject(disk.Fault{Op: disk.OpRename, Under: lease, Hang: h.held})
	waitFor(t, 20*time.Second, "a renewal of the lease to hang in its rename", func() bool {
		if err := p1.Write(context.Background(), "vol1", bytes.Repeat([]byte{1}, 4096), 0); err != nil {
			t.Fatal(err)
		}
		d, _ := p1.timer.LeaseWait()
		return d > 0
	})
	within(t, 20*time.Second, "the stop", stop1)
	last1 := p1.timer.Last()

	p2, err := open(nil)
	if err != nil {
		t.Logf("a start while the stopped run's lease rename hangs: %v", err)
	} else {
		// Refused is right; started, it stamps past the late mark.
		stop2 := runUntil(t, func(ctx context.Context) { p2.Run(ctx, 10*time.Second) })
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if err := p2.Write(context.Background(), "vol1", bytes.Repeat([]byte{2}, 4096), 0); err != nil {
				t.Fatal(err)
			}
		}
		h.release()
		waitFor(t, 10*time.Second, "the stopped run's lease write to end", func() bool { d, _ := p1.timer.LeaseWait(); return d == 0 })
		time.Sleep(100 * time.Millisecond)
		if mark := readMark(t, lease); mark <= p2.timer.Last() {
			t.Fatalf("the lease on disk says stamps below %d, %s below the last stamp %d the run started meanwhile handed out: "+
				"the stopped run's late rename replaced its mark", mark, time.Duration(p2.timer.Last()-mark), p2.timer.Last())
		}
		stop2()
		return
	}
	h.release()
	var p3 *Primary
	waitFor(t, 10*time.Second, "a start once the rename has landed", func() bool {
		p3, err = open(nil)
		return err == nil
	})
	stop3 := runUntil(t, func(ctx context.Context) { p3.Run(ctx, 10*time.Second) })
	defer stop3()
	if ts := p3.timer.Now(); ts <= last1 {
		t.Fatalf("the start after the rename landed stamps %d, not above the stopped run's last stamp %d", ts, last1)
	}
}

// readMark returns the timer's lease mark in the file at path.
func readMark(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var mf struct {
		StampsBelow int64 `json:"stamps_below_ns"`
	}
	if err := json.Unmarshal(b, &mf); err != nil {
		t.Fatal(err)
	}
	return mf.StampsBelow
}
