package site

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"duplex/disk"
)

// TestAnUnreadableActivityLogLosesNoWrite: the primary stopped uncleanly
// with a write to vol1 the secondary never got, and at the restart its
// activity log cannot be read (EIO). The primary says so, naming the file,
// and starts without the log; the regions it held are not dropped: every
// pair is resynchronised whole, and the secondary gets the write.
func TestAnUnreadableActivityLogLosesNoWrite(t *testing.T) {
	cfg := linkConfig(t)
	s, dialer := crashWithUnshippedWrites(t, cfg, "vol1")

	logPath := filepath.Join(PairStateDir(cfg), "activity.log")
	inj := disk.NewInjector(nil)
	inj.Inject(disk.Fault{Op: disk.OpRead, Under: logPath})
	logs := &logBuffer{}
	p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(logs, nil)), PrimaryOptions{Dialer: dialer, FS: inj})
	if err != nil {
		t.Fatalf("the primary does not start, its activity log unreadable: %v", err)
	}
	if inj.Injected(disk.OpRead) == 0 {
		t.Fatal("the activity log was never read")
	}
	if len(logs.lines("activity log", logPath)) == 0 {
		t.Fatalf("the log does not name the unreadable activity log %s:\n%s", logPath, logs)
	}
	runUntil(t, func(ctx context.Context) { p.Run(ctx, 0) })
	waitFor(t, 30*time.Second, "every pair duplex", func() bool { return allPairsDuplex(p.Status()) })
	quiesceMover(t, p)
	waitFor(t, 30*time.Second, "the secondary's vol1 to be the primary's", func() bool { return sameVolume(t, p, s, "vol1") })
}
