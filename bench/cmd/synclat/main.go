// Command synclat measures what the secondary's journal needs of its disk
// for a given lag: it appends a group's worth of bytes to a file once an
// interval and fsyncs it, as the secondary journals a consistency group
// (one record, one fsync, in turn), and reports the fsyncs' latencies and
// the share of the time spent in an fsync beyond the interval.
//
//	go run ./bench/cmd/synclat -dir bench/out -bytes 131072 -interval 20ms -for 10s
//
// That share bounds the lag from below: while the fsync of group k has run
// for τ, the latest group the secondary can have applied is k-1, whose time
// is at least an interval before group k was cut, and so before the fsync
// began: the lag is at least τ + interval. A lag of at most 2 × interval at
// the 99th percentile therefore needs fsyncs that spend less than 1 % of
// the time past their first interval, whatever the secondary does around
// them (several groups per fsync included: the fsync still holds the oldest).
//
// With -apply it also does what the secondary's applier and checkpoint do to
// the volumes meanwhile: the same bytes as 4 KiB writes at random offsets of
// a 64 MiB file written whole first (a volume's blocks are allocated), and
// an fsync of it every 100 ms.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"
)

func main() {
	dir := flag.String("dir", os.TempDir(), "directory on the journal's file system")
	n := flag.Int("bytes", 128<<10, "bytes appended per group")
	every := flag.Duration("interval", 20*time.Millisecond, "time between groups (the session's interval)")
	length := flag.Duration("for", 10*time.Second, "how long to run")
	apply := flag.Bool("apply", false, "write the same bytes to a volume-like file of 64 MiB beside, in random 4 KiB blocks, fsynced every 100 ms")
	flag.Parse()
	if *apply {
		vol, err := volumeLike(*dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "synclat:", err)
			os.Exit(1)
		}
		defer os.Remove(vol.Name())
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			if err := applyLike(vol, *n, *every, stop); err != nil {
				fmt.Fprintln(os.Stderr, "synclat: apply:", err)
				os.Exit(1)
			}
		}()
	}
	if err := run(*dir, *n, *every, *length); err != nil {
		fmt.Fprintln(os.Stderr, "synclat:", err)
		os.Exit(1)
	}
}

func run(dir string, n int, every, length time.Duration) error {
	f, err := os.CreateTemp(dir, "synclat-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(i * 31)
	}
	var lats []time.Duration
	var beyond time.Duration
	start := time.Now()
	next := start
	for time.Since(start) < length {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(every)
		if _, err := f.Write(buf); err != nil {
			return err
		}
		t := time.Now()
		if err := f.Sync(); err != nil {
			return err
		}
		d := time.Since(t)
		lats = append(lats, d)
		beyond += max(0, d-every)
		if time.Now().After(next) {
			// Groups queued behind a slow fsync are journaled one after
			// the other, as the secondary does.
			next = time.Now()
		}
	}
	total := time.Since(start)
	slices.Sort(lats)
	pct := func(p float64) float64 {
		return float64(lats[min(len(lats)-1, int(p*float64(len(lats))))]) / 1e6
	}
	fmt.Printf("file system of %s, %d bytes a group every %s, %s\n", filepath.Clean(dir), n, every, total.Round(time.Millisecond))
	fmt.Printf("fsyncs %d: p50 %.2f ms, p90 %.2f, p99 %.2f, max %.2f\n", len(lats), pct(0.5), pct(0.9), pct(0.99), float64(lats[len(lats)-1])/1e6)
	fmt.Printf("time in an fsync past its first %s: %.2f %% (the lag exceeds 2 x interval at least this share of the time)\n",
		every, 100*float64(beyond)/float64(total))
	return nil
}

const volSize, block = 64 << 20, 4096

// volumeLike returns a file of volSize bytes, written whole and synced, as
// a volume's blocks are allocated.
func volumeLike(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, "synclat-vol-*")
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(make([]byte, volSize)); err != nil {
		return nil, err
	}
	return f, f.Sync()
}

// applyLike writes n bytes in 4 KiB blocks at random offsets of f once an
// interval, and fsyncs it every 100 ms, until stop.
func applyLike(f *os.File, n int, every time.Duration, stop <-chan struct{}) error {
	defer f.Close()
	buf := make([]byte, block)
	tick := time.NewTicker(every)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
		for range max(1, n/block) {
			if _, err := f.WriteAt(buf, rand.Int64N(volSize/block)*block); err != nil {
				return err
			}
		}
		if time.Since(last) >= 100*time.Millisecond {
			if err := f.Sync(); err != nil {
				return err
			}
			last = time.Now()
		}
	}
}
