package nbd

import (
	"bytes"
	"syscall"
	"testing"
	"unsafe"
)

// A writev that the socket takes only in part goes on from the byte after the
// last one written, whichever buffer that falls in.
func TestRawWriterConsumeResumesAfterAPartialWrite(t *testing.T) {
	bufs := [][]byte{[]byte("abc"), []byte("defgh"), []byte("i"), []byte("jklm")}
	all := bytes.Join(bufs, nil)
	for n := 0; n <= len(all); n++ {
		w := &rawWriter{}
		for _, b := range bufs {
			w.iov = append(w.iov, syscall.Iovec{Base: unsafe.SliceData(b), Len: uint64(len(b))})
		}
		w.consume(n)
		var rest []byte
		for _, v := range w.iov {
			rest = append(rest, unsafe.Slice(v.Base, v.Len)...)
		}
		if !bytes.Equal(rest, all[n:]) {
			t.Fatalf("after %d bytes written, left to write %q, want %q", n, rest, all[n:])
		}
	}
}
