package nbd

import (
	"bytes"
	"testing"
)

// TestALoneWriteIsServedWhereReadWithOneProcessor: with a single processor,
// a client at queue depth 1 (each write sent once the one before is
// replied) has its small writes served by the read loop, each asked of the
// Prompter and replied with its data in the Export; with more processors
// they go to workers, unasked.
func TestALoneWriteIsServedWhereReadWithOneProcessor(t *testing.T) {
	withOneProcessorOrMore(t, func(t *testing.T, one bool) {
		const n = 16
		m := &promptExport{memExport: newMemExport(1 << 20)}
		r := openPrompt(t, m)
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

// TestAHeldLoneWriteDoesNotHoldUpTheNextWithOneProcessor: with a single
// processor, a lone write the Export does not promise goes to a worker, and
// while the Export holds it the writes the client sends after it are served
// and replied.
func TestAHeldLoneWriteDoesNotHoldUpTheNextWithOneProcessor(t *testing.T) {
	oneProcessor(t)
	m, held, release := heldFirst(t, 1<<20)
	r := openPrompt(t, m)
	r.write(writes(0, 1, func(int) byte { return 1 }))
	<-held
	r.write(writes(1, 3, func(int) byte { return 2 }))
	for i := 1; i < 4; i++ {
		r.expectReply(uint64(i), 0)
	}
	release()
	r.expectReply(0, 0)
}
