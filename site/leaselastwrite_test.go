package site

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestAStopOnAHungStateDiskEndsWithoutTheTimersLastWrite: the disk of
// the primary's state directory stops answering just after a renewal of
// the timer's lease, and the stop comes at once: its save of the pair
// state is given up, and no renewal is under way when it comes to the
// timer's last write (its Close), which would hang with the disk. The
// stop returns all the same.
func TestAStopOnAHungStateDiskEndsWithoutTheTimersLastWrite(t *testing.T) {
	cfg, _, dialer := linkedSecondary(t)
	h := newStateDiskHang()
	p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), PrimaryOptions{
		Dialer: dialer, FS: h.fs, stopFlushWait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := runUntil(t, func(ctx context.Context) { p.Run(ctx, 10*time.Second) })
	t.Cleanup(h.release) // before the stop
	waitFor(t, 30*time.Second, "every pair duplex", func() bool { return allPairsDuplex(p.Status()) })
	lease := filepath.Join(p.stateDir, "timer.json")
	was, err := os.ReadFile(lease)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a renewal of the lease", func() bool {
		b, err := os.ReadFile(lease)
		return err == nil && string(b) != string(was)
	})
	// The next renewal is half a lease away.
	h.hang(p.stateDir)
	within(t, 10*time.Second, "the stop on a hung state disk", stop)
	h.release()
	// The writes the stop gave up land now: the primary lets its state
	// directory go once they have, and the test's directory is removed
	// only then.
	awaitStateDirLetGo(t, cfg)
}
