package nbd

import (
	"bytes"
	"sync/atomic"
	"testing"
)

// oneProcessor has the server see a runtime with a single processor during
// the test.
func oneProcessor(t *testing.T) { seeProcessors(t, func() int { return 1 }) }

// seeProcessors has the server see the runtime's processors as n says
// during the test.
func seeProcessors(t *testing.T, n func() int) {
	prev := processors
	processors = n
	t.Cleanup(func() { processors = prev })
}

// withOneProcessorOrMore runs test as a subtest with the server seeing a
// single processor (one), then two.
func withOneProcessorOrMore(t *testing.T, test func(t *testing.T, one bool)) {
	for _, one := range []bool{true, false} {
		t.Run(map[bool]string{true: "one", false: "more"}[one], func(t *testing.T) {
			if one {
				oneProcessor(t)
			} else {
				seeProcessors(t, func() int { return 2 })
			}
			test(t, one)
		})
	}
}

func largeWrites(from, n int) []byte {
	var b []byte
	for i := from; i < from+n; i++ {
		b = append(b, requestBytes(0, CmdWrite, uint64(i), uint64(i)<<20, 1<<20, bytes.Repeat([]byte{byte(i + 1)}, 1<<20))...)
	}
	return b
}

// TestLargeWritesAreServedWhereReadWithOneProcessor: with a single
// processor, large writes the Export promises not to wait are served by the
// read loop (each asked of the Prompter), each replied, with its data in
// the Export; with more processors they go to workers, unasked.
func TestLargeWritesAreServedWhereReadWithOneProcessor(t *testing.T) {
	withOneProcessorOrMore(t, func(t *testing.T, one bool) {
		const n = 6
		m := &promptExport{memExport: newMemExport(8 << 20)}
		r := openPrompt(t, m)
		go r.nc.Write(largeWrites(0, n))
		r.repliedOK(n)
		want := int32(0)
		if one {
			want = n
		}
		if got := m.prompted.Load(); got != want {
			t.Fatalf("%d large writes served by the read loop, want %d", got, want)
		}
		for i := range n {
			if !bytes.Equal(m.snapshot(i<<20, 1<<20), bytes.Repeat([]byte{byte(i + 1)}, 1<<20)) {
				t.Fatalf("write %d: wrong data", i)
			}
		}
	})
}

// TestAHeldLargeWriteDoesNotHoldUpTheNextWithOneProcessor: with a single
// processor, a large write the Export does not promise goes to a worker,
// and while the Export holds it the large writes sent after it are served
// and replied.
func TestAHeldLargeWriteDoesNotHoldUpTheNextWithOneProcessor(t *testing.T) {
	oneProcessor(t)
	m, _, release := heldFirst(t, 8<<20)
	r := openPrompt(t, m)
	go r.nc.Write(largeWrites(0, 4))
	// In any order: one slow enough (a loaded host) is handed over from
	// the read loop and replied apart (inlineBound).
	got := map[uint64]bool{}
	for range 3 {
		e, c := r.reply()
		if e != 0 || c < 1 || c > 3 || got[c] {
			r.t.Fatalf("reply (cookie %d, error %d), want the writes 1-3's, each once, without error", c, e)
		}
		got[c] = true
	}
	release()
	r.expectReply(0, 0)
}

// TestLargeWritesFollowTheProcessorsWhileConnected: the runtime changes
// its number of processors while it runs (a daemon pinned to one CPU, or
// let go of it, has it lowered or raised within a second), and a client
// stays connected for as long as its disk is attached: large writes are
// served by the read loop only while there is a single processor, not
// according to what there was when the connection entered transmission.
func TestLargeWritesFollowTheProcessorsWhileConnected(t *testing.T) {
	var procs atomic.Int32
	procs.Store(1)
	seeProcessors(t, func() int { return int(procs.Load()) })
	m := &promptExport{memExport: newMemExport(8 << 20)}
	r := openPrompt(t, m)
	go r.nc.Write(largeWrites(0, 2))
	r.repliedOK(2)
	if got := m.prompted.Load(); got != 2 {
		t.Fatalf("with one processor: %d large writes served by the read loop, want 2", got)
	}
	procs.Store(2)
	go r.nc.Write(largeWrites(2, 2))
	r.repliedOK(2)
	if got := m.prompted.Load() - 2; got != 0 {
		t.Fatalf("with two processors since: %d large writes served by the read loop, want 0", got)
	}
	procs.Store(1)
	go r.nc.Write(largeWrites(4, 2))
	r.repliedOK(2)
	if got := m.prompted.Load() - 2; got != 2 {
		t.Fatalf("with one processor again: %d large writes served by the read loop, want 2", got)
	}
}
