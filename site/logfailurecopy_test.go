package site

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/control"
	"duplex/disk"
)

// TestAnActivityLogThatFailsUnderTheFirstCopies: the primary's activity
// log cannot be written (EIO) from its start, every pair in its first
// copy, and nor can the pair state that would let the run go on without
// the log. No region is copied unmarked, and the copier does not spin on
// the log: status says of each pending pair that its copy waits for the
// log, naming the error, and the log is tried a few times a second at
// most. Once the pair state can be written, the first write turns the log
// off, every copy goes on, and the secondary's volumes are the primary's.
func TestAnActivityLogThatFailsUnderTheFirstCopies(t *testing.T) {
	cfg, s, dialer := linkedSecondary(t)
	inj := disk.NewInjector(nil)
	logs := &logBuffer{}
	p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(logs, nil)), PrimaryOptions{
		Dialer: dialer, FS: inj})
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(PairStateDir(cfg), "activity.log")
	inj.Inject(disk.Fault{Op: disk.OpWrite, Under: PairStateDir(cfg), Err: disk.EIO})
	runUntil(t, func(ctx context.Context) { p.Run(ctx, 0) })
	waitFor(t, 30*time.Second, "every pair's status to say its copy waits for the activity log", func() bool {
		for _, v := range p.Status().Volumes {
			if v.State != "pending" || !strings.Contains(v.Note, "activity log") || !strings.Contains(v.Note, "input/output error") {
				return false
			}
		}
		return true
	})
	// A monitor sees it too: each pending pair's copy failing for some
	// time, by volume, and the failures counted.
	failing := copyFailingSeconds(p.Samples())
	for _, v := range cfg.VolumeNames() {
		if _, ok := failing[v]; !ok {
			t.Fatalf("no duplex_copy_failing_seconds of %s, its copy failing: %v", v, failing)
		}
	}
	if got := sampleMap(p.Samples())["copy_failures_total"].Value; got < float64(len(cfg.VolumeNames())) {
		t.Fatalf("duplex_copy_failures_total %v, every copy of %d pairs failed", got, len(cfg.VolumeNames()))
	}
	// Not a wait for a condition: a copier that spins on the log tries it
	// thousands of times meanwhile.
	tried := inj.Injected(disk.OpWrite)
	time.Sleep(time.Second)
	if n := inj.Injected(disk.OpWrite) - tried; n > 100 {
		t.Fatalf("the failing activity log was tried %d times in a second", n)
	}
	for _, v := range p.Status().Volumes {
		if v.State != "pending" {
			t.Fatalf("%s is %s, its copy's regions never marked in the activity log", v.Name, v.State)
		}
	}
	inj.Clear()
	inj.Inject(disk.Fault{Op: disk.OpWrite, Under: logPath, Err: disk.EIO})
	if err := p.Write(context.Background(), "vol1", make([]byte, 4096), 0); err != nil {
		t.Fatalf("a write, the pair state writable again: %v", err)
	}
	waitFor(t, 30*time.Second, "every pair duplex once the activity log is off", func() bool { return allPairsDuplex(p.Status()) })
	if p.Status().ActivityLogOff == "" {
		t.Fatal("status does not say the activity log is off")
	}
	for _, v := range p.Status().Volumes {
		if v.Note != "" {
			t.Fatalf("%s duplex, and its status still says %q", v.Name, v.Note)
		}
	}
	if failing := copyFailingSeconds(p.Samples()); len(failing) != 0 {
		t.Fatalf("every pair duplex, and copies still reported failing: %v", failing)
	}
	quiesceMover(t, p)
	for _, v := range cfg.VolumeNames() {
		waitFor(t, 30*time.Second, "the secondary's "+v+" to be the primary's", func() bool { return sameVolume(t, p, s, v) })
	}
}

// copyFailingSeconds returns the duplex_copy_failing_seconds samples, by
// their volume label.
func copyFailingSeconds(samples []control.Sample) map[string]float64 {
	m := map[string]float64{}
	for _, s := range samples {
		if s.Name == "copy_failing_seconds" {
			m[s.Labels["volume"]] = s.Value
		}
	}
	return m
}
