package nbd

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
)

// TestALoneWriteIsServedWhereReadWithOneProcessor: with a single processor,
// a client at queue depth 1 (each write sent once the one before is
// replied) has its small writes served by the read loop, each asked of the
// Prompter and replied with its data in the Export; with more processors
// they go to workers, unasked.
func TestALoneWriteIsServedWhereReadWithOneProcessor(t *testing.T) {
	for _, one := range []bool{true, false} {
		t.Run(map[bool]string{true: "one", false: "more"}[one], func(t *testing.T) {
			if one {
				oneProcessor(t)
			} else {
				prev := processors
				processors = func() int { return 2 }
				t.Cleanup(func() { processors = prev })
			}
			const n = 16
			m := &promptExport{memExport: newMemExport(1 << 20)}
			addr := startServer(t, &Server{Exports: exportMap{"rw": m}})
			r := rawDial(t, addr)
			r.open("rw")
			for i := range n {
				r.write(writes(i, 1, func(i int) byte { return byte(i + 1) }))
				r.expectReply(uint64(i), 0)
				if got := m.snapshot(i*4096, 4096); !bytes.Equal(got, bytes.Repeat([]byte{byte(i + 1)}, 4096)) {
					t.Fatalf("write %d replied without its data in the export", i)
				}
			}
			want := int32(0)
			if one {
				want = n
			}
			if got := m.prompted.Load(); got != want {
				t.Fatalf("%d lone writes served by the read loop, want %d", got, want)
			}
		})
	}
}

// TestAHeldLoneWriteDoesNotHoldUpTheNextWithOneProcessor: with a single
// processor, a lone write the Export does not promise goes to a worker, and
// while the Export holds it the writes the client sends after it are served
// and replied.
func TestAHeldLoneWriteDoesNotHoldUpTheNextWithOneProcessor(t *testing.T) {
	oneProcessor(t)
	m := &promptExport{memExport: newMemExport(1 << 20)}
	var first atomic.Bool
	first.Store(true)
	m.prompt = func() bool { return !first.Swap(false) }
	held := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) })
	m.writeHook = func(off int64) {
		if off == 0 {
			close(held)
			<-release
		}
	}
	addr := startServer(t, &Server{Exports: exportMap{"rw": m}})
	r := rawDial(t, addr)
	r.open("rw")
	r.write(writes(0, 1, func(int) byte { return 1 }))
	<-held
	r.write(writes(1, 3, func(int) byte { return 2 }))
	for i := 1; i < 4; i++ {
		r.expectReply(uint64(i), 0)
	}
	once.Do(func() { close(release) })
	r.expectReply(0, 0)
}
