package transport

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// A TableOrder writes the bytes EncodePosition writes, whatever the tables
// hold: the order's names, some of them, names it lacks, or none.
func TestTableOrderEncodesAsEncodePosition(t *testing.T) {
	for name, p := range samplePositions() {
		for _, order := range []TableOrder{nil, NewTableOrder([]string{"ss2", "ss1"}), NewTableOrder([]string{"zz"})} {
			if got, want := order.EncodePosition(TypeAck, p), EncodePosition(TypeAck, p); !bytes.Equal(got, want) {
				t.Fatalf("%s, order %q:\n got %x\nwant %x", name, order, got, want)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var subs []string
	for i := range 40 {
		subs = append(subs, fmt.Sprintf("ss%03d", i))
	}
	order := NewTableOrder(subs)
	table := func() map[string]uint64 {
		m := map[string]uint64{}
		for _, n := range subs {
			if rng.IntN(4) > 0 {
				m[n] = rng.Uint64()
			}
		}
		if rng.IntN(3) == 0 {
			m[fmt.Sprintf("other%d", rng.IntN(5))] = rng.Uint64() // not in the order
		}
		return m
	}
	for range 500 {
		p := Position{Group: rng.Uint64(), Time: rng.Int64(), Through: table(), Received: table(), Ahead: table(), JournalFree: rng.Uint64()}
		if got, want := order.EncodePosition(TypeAck, p), EncodePosition(TypeAck, p); !bytes.Equal(got, want) {
			t.Fatalf("%+v:\n got %x\nwant %x", p, got, want)
		}
	}
}

func TestNewTableOrderSortsAndDeduplicates(t *testing.T) {
	got := NewTableOrder([]string{"b", "a", "c", "a"})
	if want := (TableOrder{"a", "b", "c"}); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// An acknowledgement of 128 subsystems, as an idle secondary of 1,024
// volumes sends 50 times a second, encoded by sorting its tables and by a
// TableOrder.
func BenchmarkEncodePosition128(b *testing.B) {
	var subs []string
	for i := range 128 {
		subs = append(subs, fmt.Sprintf("ss%03d", i))
	}
	table := func() map[string]uint64 {
		m := map[string]uint64{}
		for i, n := range subs {
			m[n] = uint64(i) * 7
		}
		return m
	}
	p := Position{Group: 9, Time: 12345, Through: table(), Received: table(), Ahead: map[string]uint64{}}
	b.Run("sorted", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			EncodePosition(TypeAck, p)
		}
	})
	b.Run("order", func(b *testing.B) {
		order := NewTableOrder(subs)
		b.ReportAllocs()
		for b.Loop() {
			order.EncodePosition(TypeAck, p)
		}
	})
}
