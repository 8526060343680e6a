package transport

import (
	"bytes"
	"testing"

	"duplex/crc32c"
)

// A frame read in checksummed pieces arrives whole, and its pieces'
// checksums give ranges of it the checksum of their bytes; so do those of
// the next, read in one piece (Next 0).
func TestRecvFillsFrameSums(t *testing.T) {
	ln := listenTCP(t, nil, 0)
	client, server := tcpPair(t, ln, &TCPDialer{Addr: ln.Addr()})
	sums := &crc32c.Sums{Next: 64 << 10}
	server.(FrameSums).SetFrameSums(sums)
	frames := [][]byte{patterned(1<<20+17, 3), patterned(300<<10, 5)}
	errc := make(chan error, 1)
	go func() {
		for _, f := range frames {
			if err := client.Send(f); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i, want := range frames {
		got, err := server.Recv()
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d differs", i)
		}
		for _, r := range [][2]int{{0, len(got)}, {5, len(got) - 3}, {64 << 10, 3 << 17}, {1000, 200 << 10}} {
			if r[1] > len(got) {
				continue
			}
			if s, w := sums.Checksum(got[r[0]:r[1]]), crc32c.Checksum(got[r[0]:r[1]]); s != w {
				t.Fatalf("frame %d [%d:%d]: %#x, want %#x", i, r[0], r[1], s, w)
			}
		}
		if i == 0 {
			sums.Next = 0
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
