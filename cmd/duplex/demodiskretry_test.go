package main

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"duplex/config"
	"duplex/disk"
	"duplex/site"
)

// TestTheDemosSecondaryResumesByItselfAfterADiskFault: the demo's
// secondary stops when its journal's fsync fails, as duplex secondary's
// does; once the disk works again it opens itself again and catches up,
// with the demo still running and no restart, and the demo's stop ships
// everything as before.
func TestTheDemosSecondaryResumesByItselfAfterADiskFault(t *testing.T) {
	if testing.Short() {
		t.Skip("runs both sites of the demo")
	}
	session := config.Demo(t.TempDir())
	portBase{set: true}.apply(session)
	cfg, err := writeDemoConfig(session)
	if err != nil {
		t.Fatal(err)
	}
	in := disk.NewInjector(nil)
	d, err := startDemoSession(context.Background(), cfg, session, slog.New(slog.DiscardHandler), site.SecondaryOptions{FS: in},
		site.DiskRetry{First: 100 * time.Millisecond, Max: 400 * time.Millisecond})
	stopped := false
	if d != nil {
		defer func() {
			if !stopped {
				d.stop(false)
			}
		}()
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	holds := func(b byte) func() bool {
		want, got := bytes.Repeat([]byte{b}, 4096), make([]byte, 4096)
		return func() bool {
			return d.secondary().ReadAt("vol1", got, 0) == nil && bytes.Equal(got, want)
		}
	}
	wait := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		for end := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
			if err := d.stopped(); err != nil {
				t.Fatalf("waiting for %s: the demo's %v", what, err)
			}
			if time.Now().After(end) {
				st := d.secondary().Status()
				t.Fatalf("no %s after %v; the secondary's link %s, stopped %q, retry %+v", what, timeout, st.Link, st.Stopped, st.DiskRetry)
			}
		}
	}
	if err := d.prim.Write(ctx, "vol1", bytes.Repeat([]byte{0x11}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	wait("first write at the secondary", time.Minute, holds(0x11))

	in.Inject(disk.Fault{Op: disk.OpSync, Under: cfg.Secondary.Journal, Err: disk.EIO})
	if err := d.prim.Write(ctx, "vol1", bytes.Repeat([]byte{0x22}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	wait("stop of the secondary on the journal's fault", time.Minute, func() bool { return d.secondary().Status().Stopped != "" })
	in.Clear()
	wait("the secondary resumed by itself, holding the write made at the fault", time.Minute, func() bool {
		st := d.secondary().Status()
		return st.Stopped == "" && st.DiskRetry == nil && holds(0x22)()
	})
	stopped = true
	if _, err := d.stop(true); err != nil {
		t.Fatalf("the demo's stop: %v", err)
	}
}
