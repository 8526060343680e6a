package site

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/coupling"
	"duplex/disk"
)

// TestALeaveOwedUnreadableAtStartIsMadeOnceReadable: a promoted site that
// cannot read its record of the leave its switchover owes (here a
// disk fails its reads) reads it again every leaveRetry while it
// runs, and makes the leave once the record is readable, as etcd's answer
// is waited for. It read it at its start only, and the other site's
// rejoin was then refused, saying the site tries every second, until an
// operator restarted it.
func TestALeaveOwedUnreadableAtStartIsMadeOnceReadable(t *testing.T) {
	defer func(r time.Duration) { leaveRetry = r }(leaveRetry)
	leaveRetry = time.Millisecond
	cfg := coupledSwitchoverConfig(t, "a")
	if err := os.MkdirAll(filepath.Dir(StatePath(cfg)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writePendingLeave(nil, cfg, "1"); err != nil {
		t.Fatal(err)
	}
	// Its disk fails every read of it, until it answers again.
	in := disk.NewInjector(nil)
	in.Inject(disk.Fault{Op: disk.OpRead, Under: leavePath(cfg)})
	var logged syncBuffer
	store := coupling.NewMemStore()
	done, _ := finishLeave(t.Context(), cfg, in, store, slog.New(slog.NewTextHandler(&logged, nil)))
	time.Sleep(50 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("the leave owed is done with its record unreadable")
	default:
	}
	if !strings.Contains(logged.String(), "cannot read") {
		t.Errorf("the log does not say the record cannot be read:\n%s", logged.String())
	}
	in.Clear()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the leave owed is not made 10s after its record was made readable:\n%s", logged.String())
	}
	if _, err := os.Stat(leavePath(cfg)); err == nil {
		t.Error("the record of the leave owed stays once it was made")
	}
	if n := strings.Count(logged.String(), "cannot read"); n > 10 {
		t.Errorf("%d lines said the record cannot be read in attempts every millisecond; want the first and every 60th", n)
	}
}

// TestALeaveOwedUnreadableAtStartIsReadAgainAfterTheRetryOnly: the read
// that failed at the start is tried again a leaveRetry later, not at once:
// at once it found nothing new, and, its goroutine run after the site (or
// a test) had ended, logged into a log whose owner had let it go.
func TestALeaveOwedUnreadableAtStartIsReadAgainAfterTheRetryOnly(t *testing.T) {
	defer func(r time.Duration) { leaveRetry = r }(leaveRetry)
	leaveRetry = time.Hour
	cfg := coupledSwitchoverConfig(t, "a")
	if err := os.MkdirAll(filepath.Dir(StatePath(cfg)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writePendingLeave(nil, cfg, "1"); err != nil {
		t.Fatal(err)
	}
	in := disk.NewInjector(nil)
	in.Inject(disk.Fault{Op: disk.OpRead, Under: leavePath(cfg)})
	var logged syncBuffer
	finishLeave(t.Context(), cfg, in, coupling.NewMemStore(), slog.New(slog.NewTextHandler(&logged, nil)))
	time.Sleep(200 * time.Millisecond)
	if n := in.Injected(disk.OpRead); n != 1 {
		t.Errorf("the record unreadable at the start was read %d times within 200ms, want once (again only after leaveRetry, %s):\n%s", n, leaveRetry, logged.String())
	}
}
