package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/control"
	"duplex/disk"
	"duplex/internal/testenv"
	"duplex/site"
)

// TestSecondaryExitsOnWhatNoRetryCanChange: duplex secondary, retrying
// after its journal's fsync failed, finds at its next attempt, the disk
// working again, a journal damaged beyond a torn tail: it exits with
// status 1 and says what it found and what to do, rather than retry for
// ever under a supervisor that never hears of it.
func TestSecondaryExitsOnWhatNoRetryCanChange(t *testing.T) {
	if testing.Short() {
		t.Skip("runs both sites")
	}
	dir := t.TempDir()
	c := startupSession(dir)
	c.Secondary.Listen, c.Secondary.Control = testenv.FreeAddr(t), testenv.FreeAddr(t)
	c.Primary.Secondary = c.Secondary.Listen
	path := writeSessionConfig(t, dir, c)
	in := disk.NewInjector(nil)
	secondaryFS = in
	defer func() { secondaryFS = nil }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"secondary", "--config", path, "--disk-retry-max", "2s"}, &out, &errb)
	}()
	ctl := control.Endpoint{Addr: c.Secondary.Control}
	waitUntil(t, 30*time.Second, "the secondary's control address", func() bool {
		_, err := control.Fetch(ctx, ctl)
		return err == nil
	})
	p, err := site.OpenPrimary(c, slog.New(slog.DiscardHandler), site.PrimaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pctx, pstop := context.WithCancel(context.Background())
	pran := make(chan error, 1)
	go func() { pran <- p.Run(pctx, time.Second) }()
	defer func() { pstop(); <-pran }()
	if err := p.Write(ctx, "vol1", bytes.Repeat([]byte{0x11}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	// A group journaled before the fault, for the damage to be in one.
	waitUntil(t, 30*time.Second, "the secondary linked, a group journaled", func() bool {
		st, err := control.Fetch(ctx, ctl)
		return err == nil && st.Link == "connected" && st.JournaledGroup != nil && *st.JournaledGroup > 0
	})
	in.Inject(disk.Fault{Op: disk.OpSync, Under: c.Secondary.Journal, Err: disk.EIO})
	if err := p.Write(ctx, "vol1", bytes.Repeat([]byte{0x22}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	// Damaged during the first wait, a second long.
	waitUntil(t, 30*time.Second, "the secondary to retry", func() bool {
		st, err := control.Fetch(ctx, ctl)
		return err == nil && st.DiskRetry != nil
	})
	segs, err := filepath.Glob(filepath.Join(c.Secondary.Journal, "*.seg"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("the journal's segments: %v %v", segs, err)
	}
	f, err := os.OpenFile(segs[0], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("XXXX"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	in.Clear()
	select {
	case code := <-exited:
		if code != exitFailure {
			t.Errorf("duplex secondary exited %d, want %d", code, exitFailure)
		}
		for _, w := range []string{"journal corrupt", "no retry can change", "repair or restore the named file"} {
			if !strings.Contains(errb.String(), w) {
				t.Errorf("duplex secondary's error does not say %q:\n%s", w, errb.String())
			}
		}
	case <-time.After(15 * time.Second):
		st, _ := control.Fetch(ctx, ctl)
		t.Fatalf("duplex secondary still runs 15 s after its journal was damaged; its retry: %+v", st.DiskRetry)
	}
}

// waitUntil polls cond until it holds, or fails t after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no %s after %v", what, timeout)
		}
	}
}
