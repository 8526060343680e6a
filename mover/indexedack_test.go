package mover

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/transport"
	"duplex/volume"
)

// The primary says it reads indexed acknowledgements, and takes them by
// its Hello's order of the subsystems: what one says of a subsystem is
// what a TypeAck naming it says. One that names an index beyond the Hello
// is discarded, and the link stays.
func TestMoverReadsIndexedAcks(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1", "ss2", "ss3"}})
	l, h := p.accept(t)
	l.welcome(transport.Position{Features: transport.FeatureAsksPrimary})
	typ, body := l.next()
	if typ != transport.TypeFeatures {
		t.Fatalf("first frame after a Welcome that asks: type %d, want Features", typ)
	}
	if reads, err := transport.DecodeFeatures(body); err != nil || reads&transport.PrimaryReadsIndexedAcks == 0 {
		t.Fatalf("Features %#x (err %v): the primary does not say it reads indexed acknowledgements", reads, err)
	}
	l.welcome(transport.Position{})
	waitFor(t, "the link up", func() bool { up, _ := p.mover.Link(); return up })
	index := map[string]int{}
	for i, name := range h.Subsystems {
		index[name] = i
	}
	data := bytes.Repeat([]byte{7}, 1000)
	p.write(t, "ss2", data, 0)
	p.write(t, "ss3", data, 0)
	p.mover.Cut()
	sets := l.recordSets(3)
	send := func(p transport.Position, tables transport.IndexedTables) {
		t.Helper()
		if err := l.conn.Send(transport.EncodeIndexedAck(p, tables)); err != nil {
			t.Fatal(err)
		}
	}
	// Received, not journaled: nothing released.
	send(transport.Position{Time: 1}, transport.IndexedTables{Received: []transport.Entry{{Index: index["ss3"], Seq: sets["ss3"].Seq}}})
	waitFor(t, "the receipt to be taken", func() bool { return p.mover.Stats().Acked.Time == 1 })
	if p.used("ss2") == 0 || p.used("ss3") == 0 || p.mover.Stats().HeldSets != 3 {
		t.Fatalf("a receipt released record sets: ss2 holds %d bytes, ss3 %d, %d record sets held", p.used("ss2"), p.used("ss3"), p.mover.Stats().HeldSets)
	}
	// An index the Hello did not name: discarded whole.
	send(transport.Position{Group: 1, Time: 2}, transport.IndexedTables{Through: []transport.Entry{{Index: index["ss2"], Seq: sets["ss2"].Seq}, {Index: len(h.Subsystems), Seq: 1}}})
	send(transport.Position{Time: 3}, transport.IndexedTables{})
	waitFor(t, "the receipt after it to be taken", func() bool { return p.mover.Stats().Acked.Time == 3 })
	if st := p.mover.Stats(); p.used("ss2") == 0 || st.Acked.Group != 0 {
		t.Fatalf("an acknowledgement naming index %d of a Hello of %d was taken: ss2 holds %d bytes, acked group %d", len(h.Subsystems), len(h.Subsystems), p.used("ss2"), st.Acked.Group)
	}
	// ss2 journaled: its record set alone is released.
	send(transport.Position{Group: 1, Time: 4}, transport.IndexedTables{
		Through:  []transport.Entry{{Index: index["ss1"], Seq: sets["ss1"].Seq}, {Index: index["ss2"], Seq: sets["ss2"].Seq}},
		Received: []transport.Entry{{Index: index["ss3"], Seq: sets["ss3"].Seq}},
	})
	waitFor(t, "ss2 released", func() bool { return p.used("ss2") == 0 })
	if st := p.mover.Stats(); st.Acked.Time != 4 || p.used("ss3") == 0 || st.HeldSets != 1 {
		t.Fatalf("after an ack of ss1 and ss2: acked time %d (want 4), ss3 holds %d bytes, %d record sets held (want ss3's alone)", st.Acked.Time, p.used("ss3"), st.HeldSets)
	}
	if up, _ := p.mover.Link(); !up {
		t.Fatal("the link went down")
	}
}

// A primary from before indexed acknowledgements does not say it reads
// them.
func TestMoverWithoutIndexedAcksDoesNotAskForThem(t *testing.T) {
	p := startPrimary(t, options{noIndexedAcks: true})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Features: transport.FeatureAsksPrimary})
	typ, body := l.next()
	if typ != transport.TypeFeatures {
		t.Fatalf("first frame after a Welcome that asks: type %d, want Features", typ)
	}
	want := transport.PrimaryReadsInconsistent | transport.PrimaryReadsWaited
	if reads, err := transport.DecodeFeatures(body); err != nil || reads != want {
		t.Fatalf("Features %#x (err %v), want %#x alone", reads, err, want)
	}
}

// An idle primary of 128 subsystems takes one acknowledgement per
// interval, naming every subsystem in Through and Received: its decoding
// and taking, by name (TypeAck) and by index (TypeIndexedAck).
func BenchmarkTakeAck128(b *testing.B) {
	tm := timer.New()
	var list []*subsystem.Subsystem
	var names []string
	for i := range 128 {
		id := fmt.Sprintf("ss%03d", i)
		names = append(names, id)
		list = append(list, subsystem.New(id, tm, sidefile.New(1<<20), map[string]*volume.Volume{}, nil))
	}
	m := New(Config{Session: session, Subsystems: list, Timer: tm, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	table := func() map[string]uint64 {
		t := map[string]uint64{}
		for i, n := range names {
			t[n] = uint64(i) * 7
		}
		return t
	}
	p := transport.Position{Group: 9, Time: 12345, Through: table(), Received: table(), Ahead: map[string]uint64{}, JournalFree: 1 << 30}
	b.Run("named", func(b *testing.B) {
		_, body, _ := transport.Open(transport.EncodePosition(transport.TypeAck, p))
		b.ReportAllocs()
		for b.Loop() {
			p, err := transport.DecodePosition(body)
			if err != nil {
				b.Fatal(err)
			}
			m.mu.Lock()
			m.ackLocked(p)
			m.mu.Unlock()
		}
	})
	b.Run("indexed", func(b *testing.B) {
		_, body, _ := transport.Open(transport.NewSubsystemIndex(names).EncodeAck(p))
		var tables transport.IndexedTables
		b.ReportAllocs()
		for b.Loop() {
			p, err := transport.DecodeIndexedAck(body, len(names), &tables)
			if err != nil {
				b.Fatal(err)
			}
			m.mu.Lock()
			m.ackIndexedLocked(p, tables)
			m.mu.Unlock()
		}
	})
}
