package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"duplex/consistency"
	"duplex/transport"
	"duplex/workload"
)

// op is one operation of the sequential client of the prefix test.
type op struct {
	zero    bool
	vol     int
	block   int
	counter uint64 // for writes
}

// TestPrefixSequentialClient checks, after every applied group, that the
// secondary equals the state after some prefix of one client's sequential
// operations (writes and write-zeroes), under link faults.
func TestPrefixSequentialClient(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	net := transport.NewMemNetwork(9, transport.Faults{Drop: 0.01, Duplicate: 0.01, Reorder: 0.03, Corrupt: 0.01, Disconnect: 0.002})
	var mu sync.Mutex
	var history []op
	var bad violations
	sec := startSecondary(t, dir, net, secondaryOpts{onApplied: func(s *secondarySite, g *consistency.Group) {
		mu.Lock()
		h := append([]op(nil), history...)
		mu.Unlock()
		bad.add(g.Number, nil, checkPrefix(h, s.readDirect))
	}})
	p := startPrimary(t, dir, primaryOpts{interval: 2 * time.Millisecond, retransmit: 40 * time.Millisecond, sidefile: 1 << 20, dialer: net})

	rng := rand.New(rand.NewPCG(5, 6))
	buf := make([]byte, workload.BlockSize)
	ctx := context.Background()
	var counter uint64
	// At least 3000 operations, and on until 100 groups were checked: how
	// many operations a group gathers depends on how fast the machine is.
	const minOps, minGroups = 3000, 100
	last, since := -1, time.Now()
	for i := 0; ; i++ {
		if i >= minOps {
			n, _ := bad.snapshot()
			if n >= minGroups {
				break
			}
			if n != last {
				last, since = n, time.Now()
			} else if time.Since(since) > time.Minute {
				t.Fatalf("no group applied for 1m after %d operations: stuck after %d of %d groups", i, n, minGroups)
			}
		}
		o := op{zero: rng.IntN(8) == 0, vol: rng.IntN(layout.Volumes), block: rng.IntN(layout.BlocksPerVolume)}
		if !o.zero {
			counter++
			o.counter = counter
		}
		// Recorded before it is issued: the secondary may hold it before the
		// client sees the acknowledgement.
		mu.Lock()
		history = append(history, o)
		mu.Unlock()
		var err error
		if o.zero {
			err = p.bySS[ssName(o.vol)].WriteZeroes(ctx, volName(o.vol), int64(o.block)*workload.BlockSize, workload.BlockSize)
		} else {
			workload.Encode(buf, workload.Block{Ref: workload.Ref{Client: 1, Counter: o.counter, Volume: uint32(o.vol), Block: uint32(o.block)}})
			err = p.WriteAt(ctx, o.vol, buf, int64(o.block)*workload.BlockSize)
		}
		if err != nil {
			t.Fatal(err)
		}
		if i%5 == 4 {
			time.Sleep(time.Millisecond) // spread the operations over many groups
		}
	}
	net.SetFaults(transport.Faults{})
	quiesce(t, p, sec)
	n, list := bad.snapshot()
	if len(list) > 0 {
		t.Fatalf("secondary was not a prefix of the client's operations:\n%v", list)
	}
	if n < minGroups {
		t.Fatalf("only %d groups checked", n)
	}
	assertConverged(t, layout.Volumes, layout.BlocksPerVolume, p.read, sec.read)
	t.Logf("%d groups, each a prefix of %d operations", n, len(history))
}

// checkPrefix reports an error unless the image equals the result of some
// prefix of ops.
func checkPrefix(ops []op, read workload.Reader) error {
	img, bad, err := workload.ReadImage(layout, read)
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("undecodable block: %s", bad[0])
	}
	_, highest := img.Stats()
	m := highest[1]
	// The prefix ends at write m or at one of the zeroes right after it.
	start := 0
	if m > 0 {
		for i, o := range ops {
			if o.counter == m {
				start = i + 1
				break
			}
		}
	}
	for end := start; end <= len(ops); end++ {
		if end > start && ops[end-1].counter != 0 {
			break
		}
		if matches(img, ops[:end]) {
			return nil
		}
	}
	return fmt.Errorf("no prefix matches (highest write on the secondary %d)", m)
}

func matches(img workload.Image, ops []op) bool {
	want := make([][]uint64, layout.Volumes)
	for v := range want {
		want[v] = make([]uint64, layout.BlocksPerVolume)
	}
	for _, o := range ops {
		want[o.vol][o.block] = o.counter
	}
	for v := range want {
		for b := range want[v] {
			if img[v][b].Counter != want[v][b] {
				return false
			}
		}
	}
	return true
}

// TestIdleSubsystemDoesNotStallConsistency writes only to the first
// subsystem's volumes; the second, idle, subsystem still reports its horizon
// every interval, so groups keep forming and the consistency time advances.
func TestIdleSubsystemDoesNotStallConsistency(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	net := transport.NewMemNetwork(2, transport.Faults{})
	sec := startSecondary(t, dir, net, secondaryOpts{})
	p := startPrimary(t, dir, primaryOpts{interval: 5 * time.Millisecond, dialer: net})
	ctx := context.Background()
	buf := make([]byte, workload.BlockSize)
	var last int64
	for i := range 20 {
		workload.Encode(buf, workload.Block{Ref: workload.Ref{Client: 1, Counter: uint64(i + 1), Volume: uint32(i % 2)}})
		if err := p.WriteAt(ctx, i%2, buf, 0); err != nil { // volumes 0 and 1 are ss1's
			t.Fatal(err)
		}
		written := p.timer.Last()
		waitFor(t, 10*time.Second, "consistency time to pass the write", func() bool {
			return sec.sec.Stats().Time >= written
		})
		if now := sec.sec.Stats().Time; now <= last {
			t.Fatalf("consistency time did not advance: %d then %d", last, now)
		} else {
			last = now
		}
	}
	got := make([]byte, workload.BlockSize)
	if err := sec.read(1, got, 0); err != nil {
		t.Fatal(err)
	}
	b, err := workload.Decode(got)
	if err != nil || b.Counter != 20 {
		t.Fatalf("secondary holds %+v (%v), want the 20th write", b, err)
	}
	if lag, h := sec.sec.Stats().Laggard, sec.sec.Stats().LaggardHorizon; lag == "" || h == 0 {
		t.Fatalf("laggard not reported: %q %d", lag, h)
	}
}

// TestConvergenceOverlappingWrites hammers the same blocks of every volume with
// concurrent writes of random, unaligned, overlapping ranges, zeroes and trims;
// after the primary quiesces, each secondary volume must be byte-identical to
// its primary: both sites agree on which overlapping write won.
func TestConvergenceOverlappingWrites(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	net := transport.NewMemNetwork(3, transport.Faults{Reorder: 0.05, Duplicate: 0.02})
	sec := startSecondary(t, dir, net, secondaryOpts{})
	p := startPrimary(t, dir, primaryOpts{interval: 2 * time.Millisecond, dialer: net})
	ctx := context.Background()
	size := layout.BlocksPerVolume * workload.BlockSize
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			data := make([]byte, 3*workload.BlockSize)
			for i := range 800 {
				vol := rng.IntN(layout.Volumes)
				// Concentrated on the first 8 blocks so that writes collide.
				off := rng.IntN(8 * workload.BlockSize)
				n := 1 + rng.IntN(len(data))
				n = min(n, size-off)
				ss := p.bySS[ssName(vol)]
				var err error
				switch rng.IntN(10) {
				case 0:
					err = ss.WriteZeroes(ctx, volName(vol), int64(off), int64(n))
				case 1:
					err = ss.Trim(ctx, volName(vol), int64(off), int64(n))
				default:
					for j := range n {
						data[j] = byte(w*31 + i + j)
					}
					err = ss.Write(ctx, volName(vol), data[:n], int64(off))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	quiesce(t, p, sec)
	assertConverged(t, layout.Volumes, layout.BlocksPerVolume, p.read, sec.read)
}
