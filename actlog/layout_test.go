package actlog

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"duplex/disk"
)

// volumeSet returns n volumes of size bytes each, named v0, v1, ...
func volumeSet(n int, size int64) map[string]int64 {
	m := map[string]int64{}
	for i := range n {
		m[fmt.Sprintf("v%d", i)] = size
	}
	return m
}

// A volume added or resized across an unclean stop changes the size of a
// slot; the marks of the previous run must still be found, whichever slot
// holds them.
func TestMarksSurviveAVolumeSetChangeAcrossACrash(t *testing.T) {
	big := int64(64) << 30 // 64 Ki regions: a slot of 8 KiB for one volume
	for _, tc := range []struct {
		name   string
		before map[string]int64
		after  map[string]int64
	}{
		{"volume added", volumeSet(1, 16<<20), volumeSet(2, big)},
		{"volume resized", map[string]int64{"v0": 16 << 20}, map[string]int64{"v0": big}},
		{"volume removed", volumeSet(3, big), volumeSet(1, big)},
	} {
		for marks := 1; marks <= 2; marks++ { // the newest slot is the second, then the first
			t.Run(fmt.Sprintf("%s/%d marks", tc.name, marks), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "al")
				l, _, err := Open(path, tc.before, DefaultRegion)
				if err != nil {
					t.Fatal(err)
				}
				for i := range marks {
					if err := l.Mark("v0", int64(i+3)<<20, 4096); err != nil {
						t.Fatal(err)
					}
				}
				// Crash, then start with the new volume set.
				l2, prev, err := Open(path, tc.after, DefaultRegion)
				if err != nil {
					t.Fatalf("reopen with a new volume set: %v", err)
				}
				if got := len(prev["v0"]); got != marks {
					t.Fatalf("recovered %v, want %d regions of v0", prev, marks)
				}
				// The previous run's marks stay marked through a second crash,
				// and the first write of this run does not destroy the slot
				// that holds them (a torn write then loses nothing).
				old, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := l2.Mark("v0", 0, 1); err != nil {
					t.Fatal(err)
				}
				now, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !newestSlotKept(old, now) {
					t.Fatalf("the first write after reopening overwrote the newest slot of the previous run")
				}
				_, prev, err = Open(path, tc.after, DefaultRegion)
				if err != nil {
					t.Fatal(err)
				}
				if got := len(prev["v0"]); got != marks+1 {
					t.Fatalf("after a second crash: recovered %v, want %d regions of v0", prev, marks+1)
				}
			})
		}
	}
}

// newestSlotKept reports whether the newest valid slot of old is still
// byte for byte in now.
func newestSlotKept(old, now []byte) bool {
	off, n, ok := newestSlot(old)
	if !ok {
		return true
	}
	end := min(off+int64(n), int64(len(old))) // the last slot is not padded
	return int64(len(now)) >= end && bytes.Equal(old[off:end], now[off:end])
}

func newestSlot(data []byte) (off int64, n int, ok bool) {
	var best uint64
	for o := int64(0); o < int64(len(data)); o += 4096 {
		gen, _, size, err := decodeSlot(data[o:])
		if err == nil && (!ok || gen > best) {
			off, n, best, ok = o, size, gen, true
		}
	}
	return off, n, ok
}

// A failed write of a slot may leave it torn; the retry must go to the same
// slot, never over the one holding the newest generation on disk, or a crash
// during the retry leaves no valid slot at all.
func TestRetryAfterFailedWriteKeepsNewestSlot(t *testing.T) {
	for _, op := range []disk.Op{disk.OpWrite, disk.OpSync} {
		t.Run(op.String(), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "al")
			in := disk.NewInjector(nil)
			l, _, err := OpenFS(in, path, volumeSet(1, 64<<20), DefaultRegion)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Mark("v0", 1<<20, 1); err != nil {
				t.Fatal(err)
			}
			durable, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			in.Inject(disk.Fault{Op: op, Under: dir, Err: disk.EIO, Once: true})
			if err := l.Mark("v0", 2<<20, 1); err == nil {
				t.Fatalf("Mark succeeded although the log's %s failed", op)
			}
			if err := l.Mark("v0", 2<<20, 1); err != nil {
				t.Fatal(err)
			}
			now, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !newestSlotKept(durable, now) {
				t.Fatalf("the retry after a failed %s overwrote the newest durable slot", op)
			}
		})
	}
}
