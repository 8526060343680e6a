package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
)

// These tests hold that a stop gives up at once only on a refusal that
// lasts until an operator acts (no consent to overwrite, a fence): a
// secondary that refuses, or cannot be reached, for a while of its own
// (a disk fault it retries, a restart) is waited for as a link that may
// come back, up to the patience, and the stop is then clean.

// TestAStopWaitsForASecondaryRetryingItsDisk: a primary stopped while its
// secondary is stopped on a disk fault that it retries by itself (every
// dial meanwhile refused, saying so) waits for it: the secondary opens
// again after its backoff, takes what is held, and the stop is clean, the
// write made during the fault at the secondary.
func TestAStopWaitsForASecondaryRetryingItsDisk(t *testing.T) {
	const patience = 10 * time.Second
	cfg := linkConfig(t)
	in := disk.NewInjector(nil)
	var cur atomic.Pointer[Secondary]
	runUntil(t, func(ctx context.Context) {
		_, err := RunSecondary(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), SecondaryOptions{FS: in},
			DiskRetry{First: 2 * time.Second, Max: 2 * time.Second}, func(s *Secondary) { cur.Store(s) })
		if err != nil {
			t.Errorf("RunSecondary: %v", err)
		}
	})
	waitFor(t, 30*time.Second, "the secondary open", func() bool { return cur.Load() != nil })
	pcfg := *cfg
	pcfg.Primary.Secondary = cur.Load().ListenAddr()
	logs := &logBuffer{}
	p, err := OpenPrimary(&pcfg, slog.New(slog.NewTextHandler(logs, nil)), PrimaryOptions{Dialer: linkDialer(t, &pcfg),
		unreachablePatience: patience})
	if err != nil {
		t.Fatal(err)
	}
	var runErr error
	stop := runUntil(t, func(ctx context.Context) { runErr = p.Run(ctx, time.Minute) })
	replicatedBeforeTheFault(t, p, cur.Load, 4096)

	in.Inject(disk.Fault{Op: disk.OpSync, Under: cfg.Secondary.Journal, Err: disk.EIO})
	want := bytes.Repeat([]byte{0x22}, 4096)
	if err := p.Write(context.Background(), "vol1", want, 0); err != nil {
		t.Fatal(err)
	}
	// The link's refusal, then a dial's: the secondary refuses while it
	// waits to open again.
	waitFor(t, 30*time.Second, "the secondary to refuse the primary's dials, saying it retries", func() bool {
		ms := p.Mover().Stats()
		return ms.Refusals >= 2 && strings.Contains(ms.LastRefusal, "retries")
	})
	in.Clear()
	refused := p.Mover().Stats().Refusals
	start := time.Now()
	stop()
	took := time.Since(start)
	if p.Mover().Stats().Refusals == refused {
		t.Fatalf("no dial was refused while the primary stopped (%s): the stop did not meet the secondary's refusal", took.Round(time.Millisecond))
	}
	if runErr != nil {
		t.Fatalf("the stop, the secondary retrying its disk and back within the patience (%s), failed after %s: %v",
			patience, took.Round(time.Millisecond), runErr)
	}
	if len(logs.lines("everything shipped to the secondary")) == 0 {
		t.Errorf("the stop did not say everything shipped:\n%s", logs.String())
	}
	t.Logf("stopped clean after %s", took.Round(time.Millisecond))
	got := make([]byte, len(want))
	waitFor(t, 30*time.Second, "the secondary's vol1 to hold the write made during the fault", func() bool {
		return cur.Load().ReadAt("vol1", got, 0) == nil && bytes.Equal(got, want)
	})
}

// TestAStopWaitsForASecondaryRestarting: a primary stopped while its
// secondary restarts (its listener closed: every dial meanwhile refused by
// TCP, not by the secondary) waits for it: the secondary started again
// within the patience takes what is held, and the stop is clean.
func TestAStopWaitsForASecondaryRestarting(t *testing.T) {
	const patience = 10 * time.Second
	cfg := linkConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var cur atomic.Pointer[Secondary]
	s, err := OpenSecondary(cfg, quiet, SecondaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Store(s)
	stopSec := runFor(t, s.Run)
	pcfg := *cfg
	pcfg.Primary.Secondary = s.ListenAddr()
	logs := &logBuffer{}
	p, err := OpenPrimary(&pcfg, slog.New(slog.NewTextHandler(logs, nil)), PrimaryOptions{Dialer: linkDialer(t, &pcfg),
		unreachablePatience: patience})
	if err != nil {
		t.Fatal(err)
	}
	var runErr error
	stop := runUntil(t, func(ctx context.Context) { runErr = p.Run(ctx, time.Minute) })
	replicatedBeforeTheFault(t, p, cur.Load, 4096)

	stopSec()
	want := bytes.Repeat([]byte{0x33}, 4096)
	if err := p.Write(context.Background(), "vol1", want, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the primary's link down", func() bool { up, _ := p.Mover().Link(); return !up })
	start := time.Now()
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		s, err := OpenSecondary(cfg, quiet, SecondaryOptions{})
		if err == nil {
			cur.Store(s)
			runFor(t, s.Run)
		}
		restarted <- err
	}()
	stop()
	took := time.Since(start)
	if err := <-restarted; err != nil {
		t.Fatalf("the secondary's restart: %v", err)
	}
	ms := p.Mover().Stats()
	if !ms.FailedDialBegan.After(start) || ms.FailedDialRefused {
		t.Fatalf("no dial failed at TCP while the primary stopped (the last began %s after the stop, refused by the secondary: %v): "+
			"the stop did not meet the restart", ms.FailedDialBegan.Sub(start).Round(time.Millisecond), ms.FailedDialRefused)
	}
	if runErr != nil {
		t.Fatalf("the stop, the secondary restarted within the patience (%s), failed after %s: %v", patience, took.Round(time.Millisecond), runErr)
	}
	if len(logs.lines("everything shipped to the secondary")) == 0 {
		t.Errorf("the stop did not say everything shipped:\n%s", logs.String())
	}
	t.Logf("stopped clean after %s", took.Round(time.Millisecond))
	got := make([]byte, len(want))
	waitFor(t, 30*time.Second, "the restarted secondary's vol1 to hold the write made while it was down", func() bool {
		return cur.Load().ReadAt("vol1", got, 0) == nil && bytes.Equal(got, want)
	})
}
