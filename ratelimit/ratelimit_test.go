package ratelimit

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestUnlimitedNeverWaits(t *testing.T) {
	var nilLim *Limiter
	if err := nilLim.Wait(context.Background(), 1<<40); err != nil {
		t.Fatalf("nil limiter: %v", err)
	}
	if err := New(0).Wait(context.Background(), 1<<40); err != nil {
		t.Fatalf("rate 0: %v", err)
	}
	if got := nilLim.Rate(); got != 0 {
		t.Fatalf("nil limiter rate %d, want 0", got)
	}
}

// A request far above the bucket passes, and not faster than the rate.
func TestLargeRequestPassesAtTheRate(t *testing.T) {
	l := New(1 << 20)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.Wait(ctx, 4<<20); err != nil {
		t.Fatalf("4 MiB at 1 MiB/s: %v", err)
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("4 MiB passed a 1 MiB/s limit in %s", d)
	}
}

// Bytes allowed over a window stay near the rate, whatever the request sizes.
func TestBytesOverAWindowKeepTheRate(t *testing.T) {
	const bps = 256 << 10
	l := New(bps)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var passed int64
	start := time.Now()
	sizes := []int64{1, 4096, 1 << 20, 100, 64 << 10}
	for i := 0; ctx.Err() == nil; i++ {
		n := sizes[i%len(sizes)]
		if err := l.Wait(ctx, n); err != nil {
			break
		}
		passed += n
	}
	elapsed := time.Since(start).Seconds()
	// The bucket plus the rate over the window, generously: never more.
	if limit := float64(burstFor(bps)) + bps*elapsed*1.1; float64(passed) > limit {
		t.Fatalf("%d bytes passed in %.2fs at %d B/s (at most %.0f)", passed, elapsed, bps, limit)
	}
}

func TestCancelInterruptsWait(t *testing.T) {
	l := New(1024)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Wait(ctx, 1<<20) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("wait ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled wait for 1 MiB at 1 KiB/s did not end within 10s")
	}
}

func TestLiftingTheLimitFreesWaiters(t *testing.T) {
	l := New(1024)
	done := make(chan error, 1)
	go func() { done <- l.Wait(context.Background(), 1<<20) }()
	time.Sleep(50 * time.Millisecond)
	l.SetRate(0)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a wait for 1 MiB at 1 KiB/s went on for 10s after the limit was lifted")
	}
	if got := l.Rate(); got != 0 {
		t.Fatalf("rate %d after SetRate(0)", got)
	}
}

func TestRaisingTheRateShortensTheWait(t *testing.T) {
	l := New(1024)
	done := make(chan error, 1)
	go func() { done <- l.Wait(context.Background(), 8<<20) }()
	time.Sleep(50 * time.Millisecond)
	l.SetRate(1 << 30)
	if got := l.Rate(); got != 1<<30 {
		t.Fatalf("rate %d, want %d", got, 1<<30)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a wait for 8 MiB went on for 10s after the rate became 1 GiB/s")
	}
}
