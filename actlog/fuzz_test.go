package actlog

import "testing"

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
