package history

import (
	"bytes"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// A spilled Overlay takes a failover drill's writes: WriteOver writes the
// bytes it holds in place and Add takes the rest, so that it reads the
// newest content of every byte; Missing and IndexGrowth bound what the
// Add grows its index by, asked before it.
func TestWriteOverAndIndexGrowth(t *testing.T) {
	sc, err := CreateScratch(filepath.Join(t.TempDir(), "scratch"), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	o := NewSpilledOverlay(sc)
	const size = 4 << 20
	want := make([]byte, size)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 3000 {
		off := uint64(rng.IntN(size/4096)) * 4096
		n := uint64(1+rng.IntN(8)) * 4096
		n = min(n, size-off)
		p := bytes.Repeat([]byte{byte(i%251 + 1)}, int(n))
		if err := o.WriteOver(p, int64(off)); err != nil {
			t.Fatal(err)
		}
		grow, before := IndexGrowth(o.Missing(off, n)), o.Bytes()
		if err := o.Add(Extent{Volume: "vol1", Offset: off, Length: n, Data: p}); err != nil {
			t.Fatal(err)
		}
		if got := o.Bytes() - before; got > grow {
			t.Fatalf("write %d: the index grew by %d, past the %d IndexGrowth said", i, got, grow)
		}
		copy(want[off:], p)
	}
	got := make([]byte, size)
	if err := o.ReadOver(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the overlay does not read the newest write of every byte")
	}
	m := &Overlay{}
	m.Add(Extent{Volume: "vol1", Offset: 0, Length: 4096, Data: make([]byte, 4096)})
	if err := m.WriteOver(make([]byte, 10), 0); err == nil {
		t.Fatal("an image in memory was written over")
	}
}
