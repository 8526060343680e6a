package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"duplex/consistency"
	"duplex/transport"
	"duplex/workload"
)

// TestLargeDependentWritesUnderLinkFaults is the dependent-write invariant
// for a sequential writer's 1 MiB writes, which travel as record sets of
// 1 MiB and more, each beginning a frame the secondary places so that its
// data lies on page boundaries, journals from the frame and writes to its
// volumes from the frame (in place): a client writes A (vol0, subsystem
// ss1), waits for the acknowledgement, then B (vol2, ss2), in rotating
// slots, each stamped with its round throughout. After every applied
// group, every slot must be whole (one write's bytes, not a mixture or a
// recycled frame's) and the A of the newest B held must be held too, over
// a link that drops, duplicates, reorders, corrupts frames and cuts.
func TestLargeDependentWritesUnderLinkFaults(t *testing.T) {
	t.Parallel()
	const (
		slot  = 1 << 20
		slots = 8
	)
	blocks := slots * slot / workload.BlockSize
	dir := t.TempDir()
	faults := transport.Faults{Drop: 0.02, Duplicate: 0.02, Reorder: 0.05, Corrupt: 0.02, Disconnect: 0.003, MaxDelay: time.Millisecond}
	net := transport.NewMemNetwork(1, faults)
	var checked atomic.Int64
	bad := make(chan string, 16)
	report := func(s string) {
		select {
		case bad <- s:
		default:
		}
	}
	buf := make([]byte, slots*slot)
	stamp := func(b []byte, vol, k int) {
		for p := 0; p < len(b); p += workload.BlockSize {
			pg := b[p : p+workload.BlockSize]
			binary.BigEndian.PutUint64(pg, uint64(k))
			binary.BigEndian.PutUint32(pg[8:], uint32(vol))
			binary.BigEndian.PutUint32(pg[12:], uint32(p))
			for i := 16; i < len(pg); i += 8 {
				binary.LittleEndian.PutUint64(pg[i:], uint64(k)*0x9e3779b97f4a7c15^uint64(p+i)^uint64(vol)<<56)
			}
		}
	}
	// stamped keeps the recent rounds' writes, made once each, to compare
	// whole slots against.
	stamped := map[[2]int][]byte{}
	// held returns the round of the write a slot holds (0: none), or an
	// error if it holds no whole write.
	held := func(b []byte, vol int) (int, error) {
		k := int(binary.BigEndian.Uint64(b))
		want, ok := stamped[[2]int{vol, k}]
		if !ok {
			if len(stamped) > 8*slots {
				clear(stamped)
			}
			want = make([]byte, slot)
			if k != 0 {
				stamp(want, vol, k)
			}
			stamped[[2]int{vol, k}] = want
		}
		if !bytes.Equal(b, want) {
			for i := range b {
				if b[i] != want[i] {
					return 0, fmt.Errorf("not round %d's write whole: byte %d is %#x, want %#x", k, i, b[i], want[i])
				}
			}
		}
		return k, nil
	}
	sec := startSecondary(t, dir, net, secondaryOpts{blocks: blocks, onApplied: func(s *secondarySite, g *consistency.Group) {
		if len(g.Updates) == 0 {
			return // the volumes as last checked
		}
		rounds := map[int][]int{}
		for _, vol := range []int{0, 2} {
			if err := s.readDirect(vol, buf, 0); err != nil {
				report(err.Error())
				return
			}
			for i := range slots {
				k, err := held(buf[i*slot:(i+1)*slot], vol)
				if err != nil {
					report(fmt.Sprintf("group %d: vol%d slot %d: %v", g.Number, vol, i, err))
					return
				}
				rounds[vol] = append(rounds[vol], k)
			}
		}
		newestB := 0
		for _, k := range rounds[2] {
			newestB = max(newestB, k)
		}
		if a := rounds[0][newestB%slots]; newestB > 0 && (a < newestB || a%slots != newestB%slots) {
			report(fmt.Sprintf("group %d: vol2 holds B of round %d, but vol0's slot %d holds round %d: A written before it, acknowledged, is missing",
				g.Number, newestB, newestB%slots, a))
		}
		checked.Add(1)
	}})
	p := startPrimary(t, dir, primaryOpts{interval: 2 * time.Millisecond, retransmit: 40 * time.Millisecond, dialer: net, blocks: blocks})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	wrote := make(chan int, 1)
	go func() {
		b := make([]byte, slot)
		k := 1
		defer func() { wrote <- k - 1 }()
		for ; ctx.Err() == nil; k++ {
			off := int64(k%slots) * slot
			for _, vol := range []int{0, 2} {
				stamp(b, vol, k)
				if err := p.WriteAt(ctx, vol, b, off); err != nil {
					if ctx.Err() == nil {
						report(fmt.Sprintf("round %d: write vol%d: %v", k, vol, err))
					}
					return
				}
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Minute)
	waitChecked := func(n int64) {
		t.Helper()
		for checked.Load() < n {
			select {
			case s := <-bad:
				t.Fatal(s)
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d groups checked in 5 minutes: %s", checked.Load(), replicationState(p.mover, sec.sec))
			}
		}
	}
	waitChecked(40)
	strikeEveryFault(t, net, faults, func() { waitChecked(checked.Load() + 20) })
	stop()
	rounds := <-wrote
	net.SetFaults(transport.Faults{})
	quiesce(t, p, sec)
	select {
	case s := <-bad:
		t.Fatal(s)
	default:
	}
	assertConverged(t, layout.Volumes, blocks, p.read, sec.read)
	st, fs := sec.sec.Stats(), net.Stats()
	t.Logf("%d groups checked, %d rounds of two 1 MiB writes; link: %d frames, %d dropped, %d duplicated, %d reordered, %d corrupted, %d disconnects; secondary saw %d duplicates, %d corrupt",
		checked.Load(), rounds, fs.Frames, fs.Dropped, fs.Duplicated, fs.Reordered, fs.Corrupted, fs.Disconnects, st.Duplicates, st.CorruptFrames)
}
