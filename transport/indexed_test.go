package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// goldenIndexed is pinned by testdata/ack-indexed.hex: change neither.
func goldenIndexed() (Position, IndexedTables) {
	p := goldenPosition()
	p.Through = nil
	p.Recoverable = p.Time - 1_000_000_000
	return p, IndexedTables{
		Through:  []Entry{{0, 3}, {2, 200}},
		Received: []Entry{{0, 3}, {1, 0}, {2, 201}},
		Ahead:    []Entry{{2, 205}},
	}
}

func TestGoldenIndexedAck(t *testing.T) {
	want := readGolden(t, "testdata/ack-indexed.hex")
	p, tables := goldenIndexed()
	if got := EncodeIndexedAck(p, tables); !bytes.Equal(got, want) {
		t.Fatalf("the indexed Ack encoding no longer matches: the wire format changed\n got %x\nwant %x", got, want)
	}
	var got IndexedTables
	gp, err := DecodeIndexedAck(mustOpen(t, want, TypeIndexedAck), 3, &got)
	if err != nil {
		t.Fatalf("DecodeIndexedAck(golden): %v", err)
	}
	if !reflect.DeepEqual(gp, p) || !reflect.DeepEqual(got, tables) {
		t.Fatalf("DecodeIndexedAck(golden) = %+v, %+v; want %+v, %+v", gp, got, p, tables)
	}
	// By the names of the Hello, it says what a TypeAck of the same tables
	// says.
	names := []string{"ss1", "ss2", "ss3"}
	through, received, ahead := got.Names(names)
	wantThrough := map[string]uint64{"ss1": 3, "ss3": 200}
	wantReceived := map[string]uint64{"ss1": 3, "ss2": 0, "ss3": 201}
	wantAhead := map[string]uint64{"ss3": 205}
	if !maps.Equal(through, wantThrough) || !maps.Equal(received, wantReceived) || !maps.Equal(ahead, wantAhead) {
		t.Fatalf("Names = %v %v %v, want %v %v %v", through, received, ahead, wantThrough, wantReceived, wantAhead)
	}
	p.Through, p.Received, p.Ahead = wantThrough, wantReceived, wantAhead
	if again := NewSubsystemIndex(names).EncodeAck(p); !bytes.Equal(again, want) {
		t.Fatalf("SubsystemIndex.EncodeAck of the same tables by name:\n got %x\nwant %x", again, want)
	}
}

// An Ack encoded by index and decoded by the Hello's names says what the
// Position said of every subsystem the Hello named, whatever the tables
// hold, in whatever order the Hello named them.
func TestSubsystemIndexRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		var names []string
		for i := range rng.IntN(200) {
			names = append(names, fmt.Sprintf("ss%03d", i))
		}
		rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		table := func() map[string]uint64 {
			m := map[string]uint64{}
			for _, n := range names {
				if rng.IntN(4) > 0 {
					m[n] = rng.Uint64() >> rng.IntN(64)
				}
			}
			return m
		}
		p := Position{Group: rng.Uint64(), Time: rng.Int64N(math.MaxInt64) + 1, Through: table(), Received: table(), Ahead: table(), JournalFree: rng.Uint64()}
		if rng.IntN(3) == 0 {
			p.Inconsistent = []string{"vol1", "vol7"}
		}
		x := NewSubsystemIndex(names)
		f := x.EncodeAck(p)
		var tables IndexedTables
		got, err := DecodeIndexedAck(mustOpen(t, f, TypeIndexedAck), len(names), &tables)
		if err != nil {
			t.Fatalf("%d names: %v", len(names), err)
		}
		through, received, ahead := tables.Names(names)
		if !maps.Equal(through, p.Through) || !maps.Equal(received, p.Received) || !maps.Equal(ahead, p.Ahead) {
			t.Fatalf("tables %v %v %v, want %v %v %v", through, received, ahead, p.Through, p.Received, p.Ahead)
		}
		got.Through, got.Received, got.Ahead = p.Through, p.Received, p.Ahead
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("decoded %+v, want %+v", got, p)
		}
		// A second Ack on the same index reuses its buffers, and says the
		// same again.
		if again := x.EncodeAck(p); !bytes.Equal(again, f) {
			t.Fatalf("the same Position encodes as\n%x, then as\n%x", f, again)
		}
	}
}

// An entry of a subsystem the Hello did not name is left out, and a name
// the Hello gave twice is indexed once, by its first place.
func TestSubsystemIndexLeavesOutWhatTheHelloDidNotName(t *testing.T) {
	x := NewSubsystemIndex([]string{"b", "a", "b"})
	p := Position{Through: map[string]uint64{"a": 1, "b": 2, "gone": 3}}
	var tables IndexedTables
	if _, err := DecodeIndexedAck(mustOpen(t, x.EncodeAck(p), TypeIndexedAck), 3, &tables); err != nil {
		t.Fatal(err)
	}
	if want := []Entry{{0, 2}, {1, 1}}; !reflect.DeepEqual(tables.Through, want) {
		t.Fatalf("Through = %v, want %v", tables.Through, want)
	}
}

// indexedBody builds the body of an indexed Ack by hand: group and time
// zero, then the given table bytes, then journal free zero.
func indexedBody(tables ...[]byte) []byte {
	b := make([]byte, 16)
	for _, t := range tables {
		b = append(b, t...)
	}
	return append(b, make([]byte, 8)...)
}

// What no encoder writes, and what names a subsystem beyond the Hello's,
// is corrupt, and the error says which entry and why.
func TestDecodeIndexedAckRejectsMalformed(t *testing.T) {
	empty := []byte{0}
	for _, tc := range []struct {
		name, body string
		b          []byte
		want       string
	}{
		{name: "index beyond the Hello", b: indexedBody([]byte{1, 3, 9}, empty, empty), want: "Through table entry 1 names subsystem index 3, the Hello named 3"},
		{name: "second index beyond the Hello", b: indexedBody(empty, []byte{2, 1, 9, 1, 9}, empty), want: "Received table entry 2 names subsystem index 3, the Hello named 3"},
		{name: "huge step", b: indexedBody(empty, empty, append([]byte{1}, append(binary.AppendUvarint(nil, math.MaxUint64), 1)...)), want: "Ahead table entry 1 names subsystem index"},
		{name: "more entries than subsystems", b: indexedBody([]byte{4, 0, 1, 0, 1, 0, 1, 0, 1}, empty, empty), want: "Through table of 4 entries, with 3 subsystems"},
		{name: "count beyond the bytes", b: append(make([]byte, 16), 3, 0, 1, 0), want: "Through table of 3 entries, with 3 subsystems in the Hello and 3 bytes left"},
		{name: "long count", b: indexedBody([]byte{0x81, 0x00, 0, 1}, empty, empty), want: "not its shortest form"},
		{name: "long index", b: indexedBody([]byte{1, 0x80, 0x00, 1}, empty, empty), want: "not its shortest form"},
		{name: "long sequence number", b: indexedBody([]byte{1, 0, 0x85, 0x00}, empty, empty), want: "not its shortest form"},
		{name: "overflowing sequence number", b: indexedBody([]byte{1, 0}, bytes.Repeat([]byte{0xff}, 10), []byte{1}, empty, empty), want: "overflows"},
		{name: "truncated", b: indexedBody(empty, empty, empty)[:22], want: "truncated"},
		{name: "truncated entry", b: append(make([]byte, 16), 2, 0, 1, 0, 0x80), want: "Through table sequence number: body truncated"},
		{name: "no tables", b: make([]byte, 16), want: "truncated"},
		{name: "unknown section", b: append(indexedBody(empty, empty, empty), 0xf0), want: "section 240"},
		{name: "trailing bytes", b: append(indexedBody(empty, empty, empty), sectionRecoverable, 0, 0, 0, 0, 0, 0, 0, 0), want: "recoverable time 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tables IndexedTables
			p, err := DecodeIndexedAck(tc.b, 3, &tables)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decoded %+v %+v, err %v; want ErrCorrupt", p, tables, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
	// The same bytes from a Hello of more subsystems are an Ack.
	var tables IndexedTables
	if _, err := DecodeIndexedAck(indexedBody([]byte{1, 3, 9}, empty, empty), 4, &tables); err != nil {
		t.Fatalf("index 3 of 4 subsystems: %v", err)
	}
}

// FuzzDecodeIndexedAck: DecodeIndexedAck never panics, classifies its
// errors, names no subsystem beyond the Hello's, and what it accepts is
// exactly what EncodeIndexedAck writes.
func FuzzDecodeIndexedAck(f *testing.F) {
	p, tables := goldenIndexed()
	f.Add(uint16(3), mustBody(EncodeIndexedAck(p, tables)))
	f.Add(uint16(0), mustBody(EncodeIndexedAck(Position{}, IndexedTables{})))
	p.Inconsistent, p.Features, p.Limits, p.Waited = []string{"a", "b"}, FeatureBundles, BaselineLimits, time.Second
	f.Add(uint16(300), mustBody(EncodeIndexedAck(p, IndexedTables{Received: []Entry{{0, math.MaxUint64}, {299, 1 << 20}}})))
	f.Add(uint16(2), indexedBody([]byte{1, 3, 9}, []byte{0}, []byte{0}))
	f.Fuzz(func(t *testing.T, subsystems uint16, body []byte) {
		var tables IndexedTables
		p, err := DecodeIndexedAck(body, int(subsystems), &tables)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		for _, table := range [][]Entry{tables.Through, tables.Received, tables.Ahead} {
			for i, e := range table {
				if e.Index < 0 || e.Index >= int(subsystems) || i > 0 && e.Index <= table[i-1].Index {
					t.Fatalf("entry %d of %v: index out of range or order, %d subsystems", i, table, subsystems)
				}
			}
		}
		if again := mustBody(EncodeIndexedAck(p, tables)); !bytes.Equal(again, body) {
			t.Fatalf("indexed Ack re-encodes differently:\n in  %x\n out %x", body, again)
		}
	})
}

// An idle secondary of 128 subsystems answers each interval's bundle with an
// Ack whose Through and Received name all of them: encoded at the secondary
// and decoded at the primary, with names (TypeAck, the names sorted once in
// a TableOrder) and by index (TypeIndexedAck).
func BenchmarkAck128(b *testing.B) {
	var names []string
	for i := range 128 {
		names = append(names, fmt.Sprintf("ss%03d", i))
	}
	table := func(base uint64) map[string]uint64 {
		m := map[string]uint64{}
		for i, n := range names {
			m[n] = base + uint64(i)*7
		}
		return m
	}
	for _, base := range []uint64{0, 1_000_000} {
		p := Position{Group: 9, Time: 12345, Through: table(base), Received: table(base), Ahead: map[string]uint64{}, JournalFree: 1 << 30}
		named := EncodePosition(TypeAck, p)
		x := NewSubsystemIndex(names)
		indexed := x.EncodeAck(p)
		b.Run(fmt.Sprintf("seq=%d/encode/named", base), func(b *testing.B) {
			order := NewTableOrder(names)
			b.ReportAllocs()
			b.SetBytes(int64(len(named)))
			for b.Loop() {
				order.EncodePosition(TypeAck, p)
			}
		})
		b.Run(fmt.Sprintf("seq=%d/encode/indexed", base), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(indexed)))
			for b.Loop() {
				x.EncodeAck(p)
			}
		})
		b.Run(fmt.Sprintf("seq=%d/decode/named", base), func(b *testing.B) {
			_, body, _ := Open(named)
			b.ReportAllocs()
			b.SetBytes(int64(len(named)))
			for b.Loop() {
				if _, err := DecodePosition(body); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("seq=%d/decode/indexed", base), func(b *testing.B) {
			_, body, _ := Open(indexed)
			var tables IndexedTables
			b.ReportAllocs()
			b.SetBytes(int64(len(indexed)))
			for b.Loop() {
				if _, err := DecodeIndexedAck(body, len(names), &tables); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
