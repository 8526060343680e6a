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

	"duplex/config"
	"duplex/disk"
	"duplex/mover"
	"duplex/secondary"
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
	r := retryingSecondaryAtStop(t, patience, 2*time.Second)
	r.in.Clear()
	refused := r.p.Mover().Stats().Refusals
	start := time.Now()
	r.stop()
	took := time.Since(start)
	if r.p.Mover().Stats().Refusals == refused {
		t.Fatalf("no dial was refused while the primary stopped (%s): the stop did not meet the secondary's refusal", took.Round(time.Millisecond))
	}
	if err := *r.runErr; err != nil {
		t.Fatalf("the stop, the secondary retrying its disk and back within the patience (%s), failed after %s: %v",
			patience, took.Round(time.Millisecond), err)
	}
	if len(r.logs.lines("everything shipped to the secondary")) == 0 {
		t.Errorf("the stop did not say everything shipped:\n%s", r.logs.String())
	}
	t.Logf("stopped clean after %s", took.Round(time.Millisecond))
	got := make([]byte, len(r.want))
	waitFor(t, 30*time.Second, "the secondary's vol1 to hold the write made during the fault", func() bool {
		return r.cur.Load().ReadAt("vol1", got, 0) == nil && bytes.Equal(got, r.want)
	})
}

// retryingAtStop is a primary whose secondary, run by RunSecondary, is
// stopped on a disk fault (the journal's fsync) and waits to open again.
type retryingAtStop struct {
	in     *disk.Injector
	cur    atomic.Pointer[Secondary]
	p      *Primary
	logs   *logBuffer
	runErr *error
	stop   func()
	want   []byte // vol1's first bytes, written as the fault came
}

// retryingSecondaryAtStop runs a secondary that opens again retry after a
// disk fault, and a primary dialling it whose stop waits patience for a
// link that may come back; it returns them once the fault stopped the
// secondary and it has refused a dial of the primary, saying it retries.
func retryingSecondaryAtStop(t *testing.T, patience, retry time.Duration) *retryingAtStop {
	t.Helper()
	cfg := linkConfig(t)
	r := &retryingAtStop{in: disk.NewInjector(nil)}
	runUntil(t, func(ctx context.Context) {
		_, err := RunSecondary(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), SecondaryOptions{FS: r.in},
			DiskRetry{First: retry, Max: retry}, func(s *Secondary) { r.cur.Store(s) })
		if err != nil {
			t.Errorf("RunSecondary: %v", err)
		}
	})
	waitFor(t, 30*time.Second, "the secondary open", func() bool { return r.cur.Load() != nil })
	sp := runStoppingPrimary(t, cfg, r.cur.Load().ListenAddr(), patience)
	p := sp.p
	r.p, r.logs, r.stop, r.runErr = p, sp.logs, sp.stop, sp.runErr
	replicatedBeforeTheFault(t, p, r.cur.Load, 4096)

	r.in.Inject(disk.Fault{Op: disk.OpSync, Under: cfg.Secondary.Journal, Err: disk.EIO})
	r.want = bytes.Repeat([]byte{0x22}, 4096)
	if err := p.Write(context.Background(), "vol1", r.want, 0); err != nil {
		t.Fatal(err)
	}
	// The link's refusal, then a dial's: the secondary refuses while it
	// waits to open again.
	waitFor(t, 30*time.Second, "the secondary to refuse the primary's dials, saying it retries", func() bool {
		ms := p.Mover().Stats()
		return ms.Refusals >= 2 && strings.Contains(ms.LastRefusal, "retries")
	})
	return r
}

// TestAStopGivesUpOnASecondaryRetryingPastThePatience: a secondary whose
// disk fault outlasts the patience is waited for no longer than a link
// down: the stop ends then, not clean, saying the secondary refused it
// for the patience.
func TestAStopGivesUpOnASecondaryRetryingPastThePatience(t *testing.T) {
	const patience = 2 * time.Second
	r := retryingSecondaryAtStop(t, patience, time.Minute)
	start := time.Now()
	r.stop()
	took := time.Since(start)
	if *r.runErr == nil {
		t.Fatalf("the stop, the secondary refusing it throughout, reported clean after %s", took.Round(time.Millisecond))
	}
	// The patience counts from when the link went down, or from the stop
	// if it went down later: the link may have been down for most of it
	// before the stop began, so the stop is judged by how long the link
	// was down when it ended, not by how long the stop took.
	up, since := r.p.Mover().Link()
	if down := time.Since(since); up || down < patience || took > patience+5*time.Second {
		t.Errorf("the stop ended %s after it began, the link down for %s (up %v), the patience %s: %v",
			took.Round(time.Millisecond), down.Round(time.Millisecond), up, patience, *r.runErr)
	}
	if len(r.logs.lines("refused this primary for the patience")) == 0 {
		t.Errorf("the stop did not say the secondary refused it for the patience:\n%s", r.logs.String())
	}
	t.Logf("stopped after %s: %v", took.Round(time.Millisecond), *r.runErr)
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
	s, stopSec := runQuietSecondary(t, cfg, nil)
	cur.Store(s)
	sp := runStoppingPrimary(t, cfg, s.ListenAddr(), patience)
	p, logs, stop := sp.p, sp.logs, sp.stop
	replicatedBeforeTheFault(t, p, cur.Load, 4096)

	stopSec()
	want := bytes.Repeat([]byte{0x33}, 4096)
	if err := p.Write(context.Background(), "vol1", want, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the primary's link down", func() bool { up, _ := p.Mover().Link(); return !up })
	start := time.Now()
	restarted := make(chan error, 1)
	// The dials that failed while the secondary was down are forgotten
	// once the primary links to it again: read before its restart.
	var beforeRestart mover.Stats
	go func() {
		time.Sleep(1500 * time.Millisecond)
		beforeRestart = p.Mover().Stats()
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
	ms := beforeRestart
	if !ms.FailedDialBegan.After(start) || ms.FailedDialRefused {
		t.Fatalf("no dial failed at TCP while the primary stopped (the last began %s after the stop, refused by the secondary: %v): "+
			"the stop did not meet the restart", ms.FailedDialBegan.Sub(start).Round(time.Millisecond), ms.FailedDialRefused)
	}
	if err := *sp.runErr; err != nil {
		t.Fatalf("the stop, the secondary restarted within the patience (%s), failed after %s: %v", patience, took.Round(time.Millisecond), err)
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

// TestAStopWaitsForASecondaryThatCannotRecordTheGenerationItFollows: a
// new secondary that cannot write the data generation it is to follow
// refuses the primary's first dials, saying so; the next dial writes it
// again, with no operator acting. A stop meanwhile waits for it as for a
// link that may come back: the record written 1.5 s into the stop, the
// secondary takes the primary, the stop is clean and the write made while
// refused is at the secondary.
func TestAStopWaitsForASecondaryThatCannotRecordTheGenerationItFollows(t *testing.T) {
	const patience = 10 * time.Second
	cfg := linkConfig(t)
	in := disk.NewInjector(nil)
	s, _ := runQuietSecondary(t, cfg, in)
	in.Inject(disk.Fault{Op: disk.OpRename, Under: secondary.IdentityPath(StatePath(cfg)), Err: disk.EIO})
	sp := runStoppingPrimary(t, cfg, s.ListenAddr(), patience)
	p, logs, stop := sp.p, sp.logs, sp.stop
	waitFor(t, 30*time.Second, "the secondary to refuse the primary's dials, saying it cannot record the generation", func() bool {
		ms := p.Mover().Stats()
		return ms.Refusals >= 2 && ms.FailedDialRefused && strings.Contains(ms.LastRefusal, "cannot record the data generation it follows")
	})
	want := bytes.Repeat([]byte{0x55}, 4096)
	if err := p.Write(context.Background(), "vol1", want, 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	go func() {
		time.Sleep(1500 * time.Millisecond)
		in.Clear()
	}()
	stop()
	took := time.Since(start)
	if err := *sp.runErr; err != nil {
		t.Fatalf("the stop, the secondary's record written again within the patience (%s), failed after %s: %v",
			patience, took.Round(time.Millisecond), err)
	}
	if len(logs.lines("everything shipped to the secondary")) == 0 {
		t.Errorf("the stop did not say everything shipped:\n%s", logs.String())
	}
	t.Logf("stopped clean after %s", took.Round(time.Millisecond))
	got := make([]byte, len(want))
	waitFor(t, 30*time.Second, "the secondary's vol1 to hold the write made while it refused", func() bool {
		return s.ReadAt("vol1", got, 0) == nil && bytes.Equal(got, want)
	})
}

// stoppingPrimary is a primary of cfg linked to the secondary at addr,
// running, whose stop waits patience for a link that may come back.
type stoppingPrimary struct {
	p      *Primary
	logs   *logBuffer
	stop   func() // stops it, waiting for its Run
	runErr *error // Run's, once stopped
}

func runStoppingPrimary(t *testing.T, cfg *config.Config, addr string, patience time.Duration) stoppingPrimary {
	t.Helper()
	pcfg := *cfg
	pcfg.Primary.Secondary = addr
	sp := stoppingPrimary{logs: &logBuffer{}, runErr: new(error)}
	p, err := OpenPrimary(&pcfg, slog.New(slog.NewTextHandler(sp.logs, nil)), PrimaryOptions{Dialer: linkDialer(t, &pcfg),
		unreachablePatience: patience})
	if err != nil {
		t.Fatal(err)
	}
	sp.p = p
	sp.stop = runUntil(t, func(ctx context.Context) { *sp.runErr = p.Run(ctx, time.Minute) })
	return sp
}

// runQuietSecondary opens cfg's secondary on fsys (nil: the disk), its
// log discarded, and runs it until the returned stop.
func runQuietSecondary(t *testing.T, cfg *config.Config, fsys disk.FS) (*Secondary, func()) {
	t.Helper()
	s, err := OpenSecondary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), SecondaryOptions{FS: fsys})
	if err != nil {
		t.Fatal(err)
	}
	return s, runFor(t, s.Run)
}
