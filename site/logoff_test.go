package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/config"
	"duplex/disk"
	"duplex/transport"
)

// TestAnActivityLogThatFailsWhileRunningTurnsOff: the primary runs, its
// pairs duplex, and its activity log's disk fails. While the pair state
// cannot record that the run goes on without the log either, a write to a
// region not marked yet fails, naming the log: acknowledged, it would be
// in neither the log nor a full-copy record. Once the state can be
// written, the same write succeeds: the log is off, status, metrics and
// the log say so and why. Killed then (kill -9, the writes acknowledged
// and never shipped), the restarted primary copies every pair in full: the
// secondary gets every acknowledged write, and never holds the later
// (vol2's) without the earlier (vol1's); the log is on again.
func TestAnActivityLogThatFailsWhileRunningTurnsOff(t *testing.T) {
	cfg := linkConfig(t)
	s, dialer := duplexThenStopped(t, cfg)
	inj := disk.NewInjector(nil)
	logs := &logBuffer{}
	// The data mover does not run: what is written is acknowledged and
	// never shipped, as a kill -9 leaves it.
	p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(logs, nil)), PrimaryOptions{Dialer: dialer, FS: inj})
	if err != nil {
		t.Fatal(err)
	}
	dir := PairStateDir(cfg)
	ctx := context.Background()
	first, later := bytes.Repeat([]byte{0xa1}, 4096), bytes.Repeat([]byte{0xb2}, 4096)

	inj.Inject(disk.Fault{Op: disk.OpWrite, Under: dir, Err: disk.ENOSPC})
	err = p.Write(ctx, "vol1", first, 0)
	if err == nil || !strings.Contains(err.Error(), "activity log") {
		t.Fatalf("a write with neither the activity log nor the pair state writable: %v, want an error naming the log", err)
	}
	if off := p.Status().ActivityLogOff; off != "" {
		t.Fatalf("status says the log is off (%q), and nothing recorded that the run goes on without it", off)
	}

	inj.Clear()
	logPath := filepath.Join(dir, "activity.log")
	inj.Inject(disk.Fault{Op: disk.OpWrite, Under: logPath, Err: disk.EIO})
	if err := p.Write(ctx, "vol1", first, 0); err != nil {
		t.Fatalf("a write with the activity log failing and the pair state writable: %v", err)
	}
	if err := p.Write(ctx, "vol2", later, 0); err != nil {
		t.Fatalf("a write with the activity log off: %v", err)
	}
	if inj.Injected(disk.OpWrite) == 0 {
		t.Fatal("the activity log was never written")
	}
	wantWords(t, "status", p.Status().ActivityLogOff, "input/output error", "full", "next start")
	if got := sampleMap(p.Samples())["activity_log_off"].Value; got != 1 {
		t.Fatalf("duplex_activity_log_off %v, the log off", got)
	}
	if len(logs.lines("activity log off", "input/output error", "full", "next start")) == 0 {
		t.Fatalf("the log does not say the activity log is off and why:\n%s", logs)
	}
	p.close()

	// Read vol2, then vol1: the secondary only moves forward, so vol2's
	// write seen and then vol1's missing is the order broken.
	var broken atomic.Bool
	watch := runUntil(t, func(ctx context.Context) {
		a, b := make([]byte, 4096), make([]byte, 4096)
		for ctx.Err() == nil {
			if err := s.ReadAt("vol2", b, 0); err != nil {
				continue
			}
			if err := s.ReadAt("vol1", a, 0); err != nil {
				continue
			}
			if bytes.Equal(b, later) && !bytes.Equal(a, first) {
				broken.Store(true)
			}
			time.Sleep(time.Millisecond)
		}
	})
	restartCopiesEverything(t, cfg, s, dialer)
	watch()
	if broken.Load() {
		t.Fatal("the secondary held vol2's write without vol1's, acknowledged before it")
	}
}

// restartCopiesEverything restarts the primary of cfg, its activity log
// working, after a kill -9 of a run that had turned it off: every pair
// duplex again, the secondary's volumes are the primary's, and the log is
// kept again.
func restartCopiesEverything(t *testing.T, cfg *config.Config, s *Secondary, dialer transport.Dialer) {
	t.Helper()
	p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), PrimaryOptions{Dialer: dialer})
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, func(ctx context.Context) { p.Run(ctx, 0) })
	waitFor(t, 30*time.Second, "every pair duplex", func() bool { return allPairsDuplex(p.Status()) })
	quiesceMover(t, p)
	for _, v := range cfg.VolumeNames() {
		waitFor(t, 30*time.Second, "the secondary's "+v+" to be the primary's", func() bool { return sameVolume(t, p, s, v) })
	}
	if off := p.Status().ActivityLogOff; off != "" {
		t.Fatalf("restarted with a working activity log, status says it is off: %q", off)
	}
}

// TestAnActivityLogOnAFailingDiskTurnsOff: as above, the log on a disk
// that fails (EIO from the kernel, through its page cache) while the
// primary runs: writes go on, the log off; after a kill -9, the restart,
// the disk working again, copies every pair in full, and the log is kept
// again.
func TestAnActivityLogOnAFailingDiskTurnsOff(t *testing.T) {
	cfg := linkConfig(t)
	d := newFailingDisk(t, 1<<20)
	s, dialer := duplexThenStopped(t, cfg)
	// The log as the clean stop left it, moved onto the failing disk.
	logPath := filepath.Join(PairStateDir(cfg), "activity.log")
	content, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(logPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(d.path, logPath); err != nil {
		t.Fatal(err)
	}
	p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), PrimaryOptions{Dialer: dialer})
	if err != nil {
		t.Fatal(err)
	}
	d.fail(t, true)
	first, later := bytes.Repeat([]byte{0xc3}, 4096), bytes.Repeat([]byte{0xd4}, 4096)
	if err := p.Write(context.Background(), "vol1", first, 8192); err != nil {
		t.Fatalf("a write, the activity log's disk failing: %v", err)
	}
	if err := p.Write(context.Background(), "vol2", later, 8192); err != nil {
		t.Fatalf("a write, the activity log off: %v", err)
	}
	wantWords(t, "status", p.Status().ActivityLogOff, "input/output error")
	p.close()

	d.fail(t, false)
	restartCopiesEverything(t, cfg, s, dialer)
}
