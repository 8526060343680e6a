package secondary

import (
	"sync/atomic"
	"testing"
	"time"

	"duplex/transport"
)

// TestReceiptsReuseTheJournalFreeSpace: every frame is answered by a
// receipt that reports the journal's free space; at idle (a frame an
// interval, nothing journaled) a statfs for each cost 3–7 % of the
// secondary's CPU at 1,024 volumes. Receipts reuse the last reading while
// the journal neither grew nor shrank, and a group journaled is reported
// with a reading taken after it.
func TestReceiptsReuseTheJournalFreeSpace(t *testing.T) {
	var reads atomic.Int64
	var free atomic.Uint64
	free.Store(1 << 40)
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"vol1": 1 << 20}, subs: []string{"ss1"}}
	r.edit = func(c *Config) {
		c.Checkpoint = time.Hour // no empty group journaled in the test
		c.JournalFree = func() (uint64, error) {
			reads.Add(1)
			return free.Load(), nil
		}
	}
	r.open()
	t.Cleanup(r.close)
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendAndWait(t, conn, writeSet(1, 10_000, write("vol1", 0)))
	journaled := r.sec.Stats().JournaledGroup

	// ackOf reads acknowledgements until one says the frame of seq arrived
	// (the outbox replaces an acknowledgement still queued by a later one).
	ackOf := func(seq uint64) transport.Position {
		t.Helper()
		for {
			typ, body, err := recvFrame(conn, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if typ != transport.TypeAck {
				continue
			}
			p, err := transport.DecodePosition(body)
			if err != nil {
				t.Fatal(err)
			}
			if p.Received["ss1"] >= seq {
				return p
			}
		}
	}
	const frames = 20
	start, before := time.Now(), reads.Load()
	for i := range uint64(frames) {
		sendRecordSet(t, conn, writeSet(2+i, int64(2+i)*10_000))
		ackOf(2 + i)
	}
	// A reading serves for freeReadingAge: a slow machine may need more.
	if got, most := reads.Load()-before, int64(time.Since(start)/freeReadingAge)+1; got > most {
		t.Errorf("%d receipts with nothing journaled read the journal's free space %d times, want at most %d", frames, got, most)
	}

	// A journaled group changes the journal: it is acknowledged with a
	// reading taken after it.
	free.Store(1 << 39)
	want := r.sec.netOfReserve(1 << 39)
	seq := uint64(2 + frames)
	sendRecordSet(t, conn, writeSet(seq, int64(seq)*10_000, write("vol1", 4096)))
	p := ackOf(seq)
	for p.Group <= journaled {
		p = ackOf(seq)
	}
	if p.JournalFree != want {
		t.Errorf("after group %d was journaled the secondary reports %d bytes free, want %d", p.Group, p.JournalFree, want)
	}
}
