package secondary

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"duplex/transport"
	"duplex/volume"
)

// The receipts of a coupled secondary waiting for journal room say too
// that it waits, to a primary that reads it (Position.Waited): it reads
// no record set until there is room, so those sent meanwhile wait in the
// link's buffers, and a primary told nothing of the wait sends everything
// outstanding again every resend period of it (half a second by default,
// for up to its HeldSend, a minute), each a duplicate dropped once the
// wait is over. HeldSend still gives the link up: the wait says nothing of
// progress.
func TestReceiptsWaitingForRoomSayTheSecondaryWaits(t *testing.T) {
	dir := t.TempDir()
	free := &atomic.Uint64{}
	free.Store(1 << 40)
	v, err := volume.Open(filepath.Join(dir, "vol1.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Session: "s", Subsystems: []string{"ss1"}, Volumes: map[string]*volume.Volume{"vol1": v},
		JournalDir: filepath.Join(dir, "journal"), StatePath: filepath.Join(dir, "state.json"), Gate: newTestGate(0),
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		JournalFree: func() (uint64, error) { return free.Load(), nil }}
	sec, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &gateRig{sec: sec, vol: v, net: transport.NewMemNetwork(1, transport.Faults{})}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(1)
	go func() { defer r.wg.Done(); sec.Run(ctx, r.net) }()
	defer r.close(t)
	conn, err := r.net.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Send(transport.EncodeHello(transport.Hello{Session: "s", Subsystems: []string{"ss1"}, Instance: 7,
		Volumes: []transport.VolumeInfo{{Name: "vol1", Size: 1 << 20}}})); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		typ, body, err := recvFrame(conn, 30*time.Second)
		if err != nil || typ != transport.TypeWelcome {
			t.Fatalf("waiting for the Welcome: frame type %d, %v", typ, err)
		}
		w, err := transport.DecodePosition(body)
		if err != nil {
			t.Fatal(err)
		}
		if w.Features&transport.FeatureAsksPrimary == 0 {
			break
		}
		if err := conn.Send(transport.EncodeFeatures(transport.PrimaryReadsInconsistent | transport.PrimaryReadsWaited)); err != nil {
			t.Fatal(err)
		}
	}
	// waited is the Waited of the last receipt, as the primary reads it.
	var waited atomic.Int64
	go func() {
		for {
			f, err := conn.Recv()
			if err != nil {
				return
			}
			if typ, body, err := transport.Open(f); err == nil && typ == transport.TypeAck {
				if p, err := transport.DecodePosition(body); err == nil {
					waited.Store(int64(p.Waited))
					r.free.Store(p.JournalFree)
				}
				r.acks.Add(1)
			}
		}
	}()
	r.conn = conn
	free.Store(uint64(sec.holdReserve()) + 4096)
	for seq := uint64(1); seq <= 4; seq++ {
		r.send(t, seq)
	}
	waitGate(t, "a receiver waiting for journal room", func() bool { return !sec.Stats().JournalFullSince.IsZero() })
	// The acknowledgements of the groups before the wait may still be on
	// the way: past a few receipts of the wait, the last one is its own.
	before := r.acks.Load()
	waitGate(t, "three receipts while waiting for room", func() bool { return r.acks.Load() >= before+3 })
	deadline := time.Now().Add(10 * time.Second)
	for time.Duration(waited.Load()) < roomAnswer && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if sec.Stats().JournalFullSince.IsZero() {
		t.Fatal("the receiver stopped waiting for room: the test proves nothing")
	}
	if got := time.Duration(waited.Load()); got < roomAnswer {
		t.Fatalf("the receipts of a wait for journal room, %d of them, the last %s or more into it, say the secondary waits %s, want at least %s: "+
			"the primary sends everything outstanding again every resend period of the wait", r.acks.Load()-before, roomAnswer, got, roomAnswer)
	}
}
