package e2e

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"duplex/subsystem"
	"duplex/transport"
)

// TestOwnedWritesReplicateWhileRecycled: large writes whose buffers the
// primary keeps rather than copies, and recycles once the secondary has
// journaled them (Subsystem.NewPayload, WriteOwned, as the NBD server
// writes), reach the secondary intact: through a link that drops,
// duplicates and reorders frames, so that record sets are sent again
// around the acknowledgements that let their buffers go, and over TCP,
// where they go out in vectored writes from those buffers. Writes larger
// than a piece of the sidefile share their buffer among their updates.
// Once everything is applied, every secondary volume equals its primary.
// The writes of more than 512 KiB take their buffers from a reserve
// populated before them (burst_reserve), as a burst does.
func TestOwnedWritesReplicateWhileRecycled(t *testing.T) {
	t.Parallel()
	subsystem.Reserve(8 << 20)
	const volumes, blocks = 2, 1024 // 4 MiB each, in one subsystem
	for _, tcp := range []bool{false, true} {
		name := "mem-faults"
		if tcp {
			name = "tcp"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var dialer transport.Dialer
			var ln transport.Listener
			if tcp {
				l, err := transport.ListenTCP("127.0.0.1:0", nil, 0)
				if err != nil {
					t.Fatal(err)
				}
				dialer, ln = &transport.TCPDialer{Addr: l.Addr(), Timeout: time.Second}, l
			} else {
				net := transport.NewMemNetwork(7, transport.Faults{Drop: 0.05, Duplicate: 0.05, Reorder: 0.05, MaxDelay: time.Millisecond})
				dialer, ln = net, net
			}
			sec := startSecondary(t, dir, ln, secondaryOpts{volumes: volumes, blocks: blocks})
			// A 2 MiB sidefile: pieces of 512 KiB, so a 1 MiB write is two
			// updates in one buffer.
			p := startPrimary(t, dir, primaryOpts{interval: 5 * time.Millisecond, retransmit: 40 * time.Millisecond, sidefile: 2 << 20,
				dialer: dialer, volumes: volumes, blocks: blocks})
			ss := p.bySS[ssName(0)]
			ctx := context.Background()
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 9))
					for i := range 12 {
						n := (16 + rng.IntN(241)) * 4096 // 64 KiB to 1 MiB
						b := ss.NewPayload(n)
						for j := range b {
							b[j] = byte(w*31 + i*7 + j)
						}
						off := int64(rng.IntN((blocks*4096-n)/4096+1)) * 4096
						if err := ss.WriteOwned(ctx, volName(w%volumes), b, off); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			quiesce(t, p, sec)
			for vol := range volumes {
				want, got := make([]byte, blocks*4096), make([]byte, blocks*4096)
				if err := p.read(vol, want, 0); err != nil {
					t.Fatal(err)
				}
				if err := sec.read(vol, got, 0); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					at := 0
					for at < len(got) && got[at] == want[at] {
						at++
					}
					t.Fatalf("secondary %s differs from the primary from byte %d on", volName(vol), at)
				}
			}
		})
	}
}
