package bitmap

import (
	"errors"
	"testing"
)

func TestSetNextClearCount(t *testing.T) {
	b := New(10*DefaultRegion+100, DefaultRegion) // 11 regions, the last short
	b.Set(DefaultRegion-1, 2)                     // touches regions 0 and 1
	b.Set(10*DefaultRegion+50, 1000)              // region 10, clipped at the end
	b.Set(0, 0)                                   // nothing
	if got := b.Count(); got != 3 {
		t.Fatalf("count %d, want 3", got)
	}
	var got []int64
	for r, _, _, ok := b.Next(0); ok; r, _, _, ok = b.Next(r + 1) {
		got = append(got, r)
	}
	if len(got) != 3 || got[0] != 0 || got[1] != 1 || got[2] != 10 {
		t.Fatalf("regions %v", got)
	}
	if _, off, l, _ := b.Next(10); off != 10*DefaultRegion || l != 100 {
		t.Fatalf("last region [%d, +%d)", off, l)
	}
	if got := b.DirtyBytes(); got != 2*DefaultRegion+100 {
		t.Fatalf("dirty %d", got)
	}
	b.Clear(1)
	b.Clear(1)
	if b.Count() != 2 {
		t.Fatalf("count after clear %d", b.Count())
	}
}

func TestEncodingRoundTripAndCorruption(t *testing.T) {
	b := New(1<<30, DefaultRegion)
	b.Set(12345, 1<<20)
	b.Set(900<<20, 1)
	data, _ := b.MarshalBinary()
	c, err := Decode(data, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if c.Count() != b.Count() || c.DirtyBytes() != b.DirtyBytes() {
		t.Fatalf("round trip: %d/%d regions", c.Count(), b.Count())
	}
	if _, err := Decode(data, 1<<29); err == nil {
		t.Fatal("bitmap accepted for another volume size")
	}
	for i := range data {
		bad := append([]byte(nil), data...)
		bad[i] ^= 0x10
		if _, err := Decode(bad, 1<<30); err == nil {
			t.Fatalf("flip at byte %d accepted", i)
		}
	}
	if _, err := Decode(data[:len(data)-1], 1<<30); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated: %v", err)
	}
}

func FuzzDecodeBitmap(f *testing.F) {
	b := New(1<<20, 4096)
	b.Set(5000, 70000)
	data, _ := b.MarshalBinary()
	f.Add(data, int64(1<<20))
	f.Add([]byte("DXBM"), int64(1))
	f.Fuzz(func(t *testing.T, data []byte, size int64) {
		if size <= 0 || size > 1<<40 {
			return
		}
		if b, err := Decode(data, size); err == nil {
			again, _ := b.MarshalBinary()
			if string(again) != string(data) {
				t.Fatal("decoded bitmap re-encodes differently")
			}
		}
		if b, err := DecodeAnySize(data); err == nil {
			again, _ := b.MarshalBinary()
			if string(again) != string(data) {
				t.Fatal("bitmap decoded for the size it records re-encodes differently")
			}
		}
	})
}

// A clone is independent: clearing a region of the original leaves the
// clone's mark (a suspended pair's bitmap against its old copy bitmap).
func TestCloneIsIndependent(t *testing.T) {
	b := New(1<<20, 4096)
	b.Set(0, 3*4096)
	c := b.Clone()
	b.Clear(1)
	c.Set(10*4096, 1)
	if got, want := b.Count(), 2; got != want {
		t.Fatalf("original: %d regions, want %d", got, want)
	}
	if got, want := c.Count(), 4; got != want {
		t.Fatalf("clone: %d regions, want %d", got, want)
	}
	if r, _, _, ok := c.Next(1); !ok || r != 1 {
		t.Fatalf("clone lost region 1 cleared in the original")
	}
}
