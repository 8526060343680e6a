package subsystem

import (
	"bytes"
	"context"
	"fmt"
	"syscall"
	"testing"

	"duplex/recordset"
)

// TestZeroesKeptAllocatedAreCapturedAsAnyZeroes: a client's NO_HOLE zeroes
// (WriteZeroesAllocated) are captured as any zeroes, in timestamp order
// with the writes around them, so the secondary's replay holds what the
// primary volume does, and the volume keeps the blocks it had. When the
// volume fails them, they are reported as a failed write, for the pair
// manager to copy the range again, as the secondary gets them all the
// same.
func TestZeroesKeptAllocatedAreCapturedAsAnyZeroes(t *testing.T) {
	f := newFixture(t, 1<<20, "a", "b")
	ctx := context.Background()
	if err := f.ss.Write(ctx, "a", bytes.Repeat([]byte{0xab}, volSize), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.ss.Flush("a"); err != nil {
		t.Fatal(err)
	}
	allocated := func() int64 {
		var st syscall.Stat_t
		if err := syscall.Stat(f.vols["a"].Path(), &st); err != nil {
			t.Fatal(err)
		}
		return st.Blocks * 512
	}
	before := allocated()
	if err := f.ss.WriteZeroesAllocated(ctx, "a", 4096+1, 32768); err != nil {
		t.Fatal(err)
	}
	if err := f.ss.Write(ctx, "a", []byte("after"), 8192); err != nil {
		t.Fatal(err)
	}
	if after := allocated(); after < before {
		t.Errorf("a's image holds %d bytes after the zeroes kept allocated, %d before", after, before)
	}
	us, _, _ := f.ss.Drain()
	if len(us) != 3 {
		t.Fatalf("drained %d updates, want 3", len(us))
	}
	z := us[1]
	z.Timestamp = 0
	if want := (recordset.Update{Volume: "a", Kind: recordset.KindZeroes, Offset: 4096 + 1, Length: 32768, Seq: 2}); fmt.Sprint(z) != fmt.Sprint(want) {
		t.Errorf("the zeroes were captured as %+v, want %+v", z, want)
	}
	if !(us[0].Timestamp < us[1].Timestamp && us[1].Timestamp < us[2].Timestamp) {
		t.Errorf("timestamps %d, %d, %d out of the order of the calls", us[0].Timestamp, us[1].Timestamp, us[2].Timestamp)
	}
	if got := readVol(t, f.vols["a"], 0, volSize); !bytes.Equal(got, replay(volSize, us, "a")) {
		t.Error("the volume differs from the replay of what was captured")
	}
	releaseAll(f.side, us)

	f.vols["b"].Close()
	if err := f.ss.WriteZeroesAllocated(ctx, "b", 512, 4096); err == nil {
		t.Fatal("zeroes kept allocated that the volume failed returned no error")
	}
	fws := f.ss.FailedWrites()
	if len(fws) != 1 || fws[0].Volume != "b" || fws[0].Offset != 512 || fws[0].Length != 4096 || fws[0].Err == nil {
		t.Fatalf("failed writes reported: %+v, want b's [512, +4096) with its error", fws)
	}
}
