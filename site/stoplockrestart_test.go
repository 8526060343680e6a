package site

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/disk"
)

// TestARestartWhileTheStopsHungLogWriteHoldsTheLockSaysWhy: the activity
// log's last write hangs on the state directory's disk at the stop, which
// gives it up and returns nil: the pair state is saved clean, and the next
// start needs none of the log's marks. The LOCK stays held until that
// write ends (a later run's log would otherwise be overwritten by it). The
// stop says so in its log, and a start of the primary in the same process
// meanwhile is refused saying why: this process's last run holds the
// directory for the write its stop gave up, not another primary. Once the
// disk answers, LetGo is closed and a start goes on. Before, the stop's log
// said nothing of the lock, and the start was refused as if another
// primary ran ("is another primary of session ... running?", naming this
// process's own pid).
func TestARestartWhileTheStopsHungLogWriteHoldsTheLockSaysWhy(t *testing.T) {
	p, _, h, logs, stop := stateDiskHangingOf(t, 500*time.Millisecond, 0, nil, func(h *stateDiskHang, dir string) {
		h.fs.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(dir, "activity.log"), Hang: h.held})
	})
	cfg := p.cfg
	var stopErr error
	within(t, 20*time.Second, "the stop", func() { stopErr = stop() })
	if stopErr != nil {
		t.Errorf("the stop, the pair state saved clean and the activity log's last write given up: %v, want nil", stopErr)
	}
	if len(logs.lines("the pair-state directory stays locked")) == 0 {
		t.Errorf("the stop's log does not say it keeps the pair-state directory locked:\n%s", logs.String())
	}
	select {
	case <-p.LetGo():
		t.Fatal("the stopped primary says it let its pair-state directory go with the activity log's last write under way")
	default:
	}
	p2, err := OpenPrimary(cfg, slog.New(slog.DiscardHandler), PrimaryOptions{slowDisk: 200 * time.Millisecond})
	if err == nil {
		runUntil(t, func(ctx context.Context) { p2.Run(ctx, time.Second) })()
		t.Fatal("a primary started in the process while the stopped one's last write of the activity log hangs")
	}
	t.Logf("the start meanwhile: %v", err)
	for _, want := range []string{"this process's last run", "the activity log's last write", "let go once"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the start meanwhile was refused with %q: want it to say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "another primary") {
		t.Errorf("the start meanwhile was refused with %q: it blames another primary", err)
	}
	h.release()
	select {
	case <-p.LetGo():
	case <-time.After(10 * time.Second):
		t.Fatal("the stopped primary has not let its pair-state directory go 10 s after the disk answered")
	}
	if len(logs.lines("let go of the pair-state directory")) == 0 {
		t.Errorf("the log does not say the directory was let go:\n%s", logs.String())
	}
	awaitStateDirLetGo(t, cfg)
}
