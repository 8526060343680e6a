package actlog

import (
	"os"
	"path/filepath"
	"testing"
)

func FuzzDecodeSlot(f *testing.F) {
	l := &Log{region: DefaultRegion, vols: map[string]*vol{"a": {size: 8 << 20, bits: []uint64{0x5}, counts: make([]int32, 8), sticky: []uint64{0}}}, names: []string{"a"}, gen: 7}
	f.Add(l.encode())
	f.Add([]byte("DXAL\x00\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		gen, marks, _, err := decodeSlot(b)
		if err != nil {
			return
		}
		_ = gen
		for _, rs := range marks {
			for _, r := range rs {
				if r[0] < 0 || r[1] <= 0 {
					t.Fatalf("decoded range %v", r)
				}
			}
		}
	})
}

// Open scans a file of any content for slots: it must never panic, and what
// it recovers must lie within the volumes it names.
func FuzzOpen(f *testing.F) {
	l := &Log{region: DefaultRegion, vols: map[string]*vol{"a": {size: 8 << 20, bits: []uint64{0x5}, counts: make([]int32, 8), sticky: []uint64{0}}}, names: []string{"a"}, gen: 7}
	slot := l.encode()
	f.Add(slot)
	f.Add(append(make([]byte, 8192), slot...))
	f.Add(append(append(slot, make([]byte, 4096-len(slot))...), slot[:len(slot)-1]...))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "al")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		l, prev, err := Open(path, map[string]int64{"a": 8 << 20, "b": 3 << 20}, DefaultRegion)
		if err != nil {
			return
		}
		defer l.Close()
		for _, rs := range prev {
			for _, r := range rs {
				if r[0] < 0 || r[1] <= 0 {
					t.Fatalf("recovered range %v", r)
				}
			}
		}
		if err := l.Mark("a", 0, 1); err != nil {
			t.Fatal(err)
		}
	})
}
