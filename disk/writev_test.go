package disk

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// memFile is a WriterAt that is not an *os.File.
type memFile struct{ b []byte }

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if n := int(off) + len(p); n > len(m.b) {
		m.b = append(m.b, make([]byte, n-len(m.b))...)
	}
	return copy(m.b[off:], p), nil
}

// TestWriteVWritesBuffersBackToBack: WriteV leaves what writing the
// buffers one after another leaves, in a file (more buffers than one
// pwritev takes, empty ones, one alone) and in any other WriterAt, and
// leaves the caller's buffers as they were.
func TestWriteVWritesBuffersBackToBack(t *testing.T) {
	var bufs [][]byte
	var want []byte
	for i := range iovMax + 300 {
		b := bytes.Repeat([]byte{byte(i), byte(i >> 8)}, i%7)
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	bufs = append(bufs, nil, bytes.Repeat([]byte{7}, 100000))
	want = append(want, bytes.Repeat([]byte{7}, 100000)...)
	const off = 12345
	for _, tc := range []struct {
		name string
		bufs [][]byte
		want []byte
	}{{"many", bufs, want}, {"one", bufs[len(bufs)-1:], bufs[len(bufs)-1]}} {
		orig := append([][]byte(nil), tc.bufs...)
		f, err := os.Create(filepath.Join(t.TempDir(), "f"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		mem := &memFile{}
		for _, w := range []interface {
			WriteAt([]byte, int64) (int, error)
		}{f, mem} {
			n, err := WriteV(w, tc.bufs, off)
			if err != nil || n != int64(len(tc.want)) {
				t.Fatalf("%s: WriteV = %d, %v; want %d", tc.name, n, err, len(tc.want))
			}
		}
		for i := range tc.bufs {
			if len(tc.bufs[i]) != len(orig[i]) {
				t.Fatalf("%s: buffer %d changed length", tc.name, i)
			}
		}
		got, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[off:], tc.want) || !bytes.Equal(mem.b[off:], tc.want) {
			t.Fatalf("%s: the file or the WriterAt holds other bytes than the buffers back to back", tc.name)
		}
	}
}
