package transport

import (
	"bytes"
	"encoding/binary"
	"testing"

	"duplex/crc32c"
)

// A frame of PlaceMin bytes or more is read into the buffer place picks
// after seeing its first PlaceHead bytes, at the place in that buffer it
// picks, and arrives whole, its pieces checksummed as read; a shorter one
// is read as before (FrameBuffers' alloc, here none). Over TCP and the
// in-memory link alike.
func TestRecvPlacesLargeFrames(t *testing.T) {
	ln := listenTCP(t, nil, 0)
	tcpClient, tcpServer := tcpPair(t, ln, &TCPDialer{Addr: ln.Addr()})
	memServer, memClient := newMemPair(NewMemNetwork(1, Faults{}))
	for _, link := range []struct {
		name           string
		client, server Conn
	}{{"tcp", tcpClient, tcpServer}, {"mem", memClient, memServer}} {
		sums := &crc32c.Sums{Next: 64 << 10}
		link.server.(FrameSums).SetFrameSums(sums)
		var heads [][]byte
		var bufs [][]byte
		link.server.(FramePlacer).SetFramePlace(func(head []byte, n int) []byte {
			heads = append(heads, bytes.Clone(head))
			b := make([]byte, n+300)
			bufs = append(bufs, b)
			return b[123:]
		})
		frames := [][]byte{patterned(1<<20+17, 3), patterned(PlaceMin-1, 5), patterned(3<<20, 7)}
		errc := make(chan error, 1)
		go func() {
			for _, f := range frames {
				if err := link.client.Send(f); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		placed := 0
		for i, want := range frames {
			got, err := link.server.Recv()
			if err != nil {
				t.Fatalf("%s: Recv %d: %v", link.name, i, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: frame %d differs", link.name, i)
			}
			if s, w := sums.Checksum(got[7:]), crc32c.Checksum(got[7:]); s != w {
				t.Fatalf("%s: frame %d: sum %#x, want %#x", link.name, i, s, w)
			}
			if len(want) < PlaceMin {
				if len(heads) != placed {
					t.Fatalf("%s: frame %d of %d bytes shown to place", link.name, i, len(want))
				}
				continue
			}
			if len(heads) != placed+1 || !bytes.Equal(heads[placed], want[:PlaceHead]) {
				t.Fatalf("%s: frame %d: place saw %d heads, the last not the frame's first %d bytes", link.name, i, len(heads), PlaceHead)
			}
			if &got[0] != &bufs[placed][123] {
				t.Fatalf("%s: frame %d not read where place put it", link.name, i)
			}
			placed++
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// FirstSetAt finds a frame's first record set from its first bytes: a
// record-set frame's at 1, a bundle's after its header; a bundle without
// sets, a frame of another type, and heads too short to say have none.
func TestFirstSetAt(t *testing.T) {
	set := bytes.Repeat([]byte{9}, 40)
	bundle := func(sets int, beats []Heartbeat) []byte {
		sizes := make([]int, sets)
		for i := range sizes {
			sizes[i] = len(set)
		}
		f := BeginBundle(nil, sizes, beats)
		for range sets {
			f = append(f, set...)
		}
		return Seal(f)
	}
	beats := []Heartbeat{{Subsystem: 1, Seq: 2, Horizon: 3}, {Subsystem: 2, Seq: 4, Horizon: 5}}
	for _, c := range []struct {
		name string
		head []byte
		at   int
		ok   bool
	}{
		{"record set", append([]byte{TypeRecordSet}, set...), 1, true},
		{"bundle", bundle(2, nil), 5 + bundleHeaderSize(2, 0), true},
		{"bundle with heartbeats", bundle(1, beats), 5 + bundleHeaderSize(1, 2), true},
		{"bundle of heartbeats", bundle(0, beats), 0, false},
		{"bundle cut in its header", bundle(1, beats)[:20], 0, false},
		{"bundle header too short", binary.BigEndian.AppendUint32([]byte{TypeBundle}, 3), 0, false},
		{"bundle header length past everything", binary.BigEndian.AppendUint32([]byte{TypeBundle, 0, 0}, 1<<31), 0, false},
		{"another type", Frame(TypeHello, set), 0, false},
		{"nothing", nil, 0, false},
	} {
		at, ok := FirstSetAt(c.head)
		if at != c.at || ok != c.ok {
			t.Errorf("%s: FirstSetAt = %d, %v; want %d, %v", c.name, at, ok, c.at, c.ok)
		}
		if ok {
			if b, err := DecodeBundle(c.head[1 : len(c.head)-4]); c.head[0] == TypeBundle && (err != nil || !bytes.Equal(c.head[at:at+len(set)], b.Sets[0])) {
				t.Errorf("%s: the set at %d is not the bundle's first (%v)", c.name, at, err)
			}
		}
	}
}

func FuzzFirstSetAt(f *testing.F) {
	f.Add([]byte{TypeBundle, 0, 0, 0, 6, 0, 0, 0, 0, 0, 1})
	f.Add(append([]byte{TypeRecordSet}, 1, 2, 3))
	f.Fuzz(func(t *testing.T, head []byte) {
		at, ok := FirstSetAt(head)
		if ok && (at < 1 || at > len(head)) {
			t.Fatalf("FirstSetAt = %d for a head of %d bytes", at, len(head))
		}
	})
}
