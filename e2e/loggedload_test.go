package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"

	"duplex/workload"
)

// loggedLoad is what clients run at the site that is the primary: four
// clients of dependent writes over NBD in a region of their own (base,
// first client), and two clients whose every write the test logs, in slots
// of one block each between logBase and logEnd.
type loggedLoad struct {
	lay     workload.Layout
	base    int64
	target  *nbdTarget
	stop    context.CancelFunc
	done    chan error
	mu      sync.Mutex
	logs    [2][]promoteWrite
	clients sync.WaitGroup
	ended   sync.Once
}

const loggedLoadBlocks = 128 // the dependent writes' blocks per volume: 512 KiB

func startLoggedLoad(t *testing.T, addr string, names []string, firstClient uint32, base, logBase, logEnd int64, seed uint64) *loggedLoad {
	t.Helper()
	l := &loggedLoad{lay: workload.Layout{Volumes: len(names), BlocksPerVolume: loggedLoadBlocks, Clients: 4, FirstClient: firstClient},
		base: base, done: make(chan error, 1)}
	l.target = dialTarget(t, addr, names, l.lay, base)
	ctx, stop := context.WithCancel(context.Background())
	l.stop = stop
	go func() {
		_, err := workload.Run(ctx, l.lay, l.target, 0, seed)
		l.done <- err
	}()
	// 64 slots per volume, each its own block: which of two writes to one
	// block was acknowledged last is not what the test knows.
	rng := rand.New(rand.NewPCG(seed, 12))
	blocks := rng.Perm(int((logEnd - logBase) / 4096))
	var slots []promoteWrite
	for pass := 0; pass < 64; pass++ {
		for vol := range names {
			data := bytes.Repeat([]byte{byte(rng.Uint32())}, 4096)
			binary.BigEndian.PutUint64(data, uint64(len(slots)+1))
			slots = append(slots, promoteWrite{vol: vol, off: logBase + int64(blocks[pass])*4096, data: data})
		}
	}
	half := len(slots) / 2
	for i, part := range [][]promoteWrite{slots[:half], slots[half:]} {
		l.clients.Add(1)
		go func() {
			defer l.clients.Done()
			// Round and round until a write fails or the test stops it.
			for ctx.Err() == nil {
				if err := promoteClient(ctx, addr, names, part, &l.logs[i], &l.mu); err != nil {
					return
				}
			}
		}()
	}
	l.target.waitAcked(t)
	return l
}

// acked returns the logged writes acknowledged so far: each slot holds one
// block and always the same data, so each must be where it was written.
func (l *loggedLoad) acked() []promoteWrite {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []promoteWrite
	for _, log := range l.logs {
		for _, w := range log {
			if w.acked {
				out = append(out, w)
			}
		}
	}
	return out
}

func (l *loggedLoad) end() {
	l.ended.Do(func() {
		l.stop()
		<-l.done
		l.clients.Wait()
		l.target.close()
	})
}
