package volume

import (
	"bytes"
	"path/filepath"
	"syscall"
	"testing"
)

// TestZeroAllocatedKeepsTheRangeAllocated: ZeroAllocated, a client's
// WRITE_ZEROES with NO_HOLE, zeroes written data at unaligned ends without
// giving back the blocks it had, where WriteZeroes may punch them out; on
// a file system without fallocate(ZERO_RANGE) it writes the zeroes.
func TestZeroAllocatedKeepsTheRangeAllocated(t *testing.T) {
	for _, refused := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "v.img")
		v, err := Open(path, 4<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		v.noZeroRange.Store(refused)
		data := bytes.Repeat([]byte{0xab}, 2<<20)
		if err := v.WriteAt(data, 1<<20); err != nil {
			t.Fatal(err)
		}
		if err := v.Flush(); err != nil {
			t.Fatal(err)
		}
		allocated := func() int64 {
			var st syscall.Stat_t
			if err := syscall.Stat(path, &st); err != nil {
				t.Fatal(err)
			}
			return st.Blocks * 512
		}
		before := allocated()
		if err := v.ZeroAllocated(1<<20+100, 1<<20); err != nil {
			t.Fatal(err)
		}
		if after := allocated(); after < before {
			t.Errorf("ZeroAllocated (ZERO_RANGE refused: %v): %d bytes allocated after, %d before", refused, after, before)
		}
		got := make([]byte, len(data))
		if err := v.ReadAt(got, 1<<20); err != nil {
			t.Fatal(err)
		}
		want := bytes.Clone(data)
		clear(want[100 : 100+1<<20])
		if !bytes.Equal(got, want) {
			t.Errorf("ZeroAllocated (ZERO_RANGE refused: %v): the range does not read back as zeroes amid the data", refused)
		}
		if err := v.ZeroAllocated(4<<20-1, 2); err == nil {
			t.Errorf("ZeroAllocated past the end succeeded")
		}
	}
}
