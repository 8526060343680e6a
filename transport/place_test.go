package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"

	"duplex/crc32c"
)

// A frame of PlaceMin bytes or more is read into the buffer place picks
// after seeing its first PlaceHead bytes, at the place in that buffer it
// picks, and arrives whole, its pieces checksummed as read; a shorter one
// is read as before (FrameBuffers' alloc, here none). Over TCP, TLS (whose
// records the head may end inside) and the in-memory link alike.
func TestRecvPlacesLargeFrames(t *testing.T) {
	ln := listenTCP(t, nil, 0)
	tcpClient, tcpServer := tcpPair(t, ln, &TCPDialer{Addr: ln.Addr()})
	ca := newCA(t, "duplex test CA")
	tln := listenTCP(t, serverTLS(ca, ca.issue(t, "secondary")), 0)
	cert := ca.issue(t, "primary")
	tlsClient, tlsServer := tcpPair(t, tln, &TCPDialer{Addr: tln.Addr(), TLS: clientTLS(ca, &cert)})
	memServer, memClient := newMemPair(NewMemNetwork(1, Faults{}))
	for _, link := range []struct {
		name           string
		client, server Conn
	}{{"tcp", tcpClient, tcpServer}, {"tls", tlsClient, tlsServer}, {"mem", memClient, memServer}} {
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
		frames := [][]byte{patterned(1<<20+17, 3), patterned(PlaceMin-1, 5), patterned(3<<20, 7), patterned(PlaceMin, 11)}
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

// A frame of PlaceMin bytes or more that ends before its announced length
// (the link cut, or a length that lies) is an error from Recv, whether it
// ends inside the head (place is not asked) or after it, and a placed
// buffer is not returned.
func TestRecvOfAPlacedFrameCutShort(t *testing.T) {
	for _, c := range []struct {
		name   string
		sent   int // of the frame's announced 2 MiB
		placed bool
	}{{"nothing", 0, false}, {"inside the head", PlaceHead - 1, false}, {"the head", PlaceHead, true}, {"past the head", 1 << 20, true}, {"a byte short", 2<<20 - 1, true}} {
		a, b := net.Pipe()
		server := newTCPConn(a, 0)
		asked := 0
		server.SetFramePlace(func(head []byte, n int) []byte {
			asked++
			if len(head) != PlaceHead || n != 2<<20 {
				t.Errorf("%s: place shown %d bytes of a frame of %d", c.name, len(head), n)
			}
			return make([]byte, n)
		})
		go func() {
			defer b.Close()
			w := binary.BigEndian.AppendUint32(nil, 2<<20)
			w = append(w, patterned(c.sent, 1)...)
			b.Write(w)
		}()
		f, err := server.Recv()
		if err == nil || f != nil {
			t.Errorf("%s: Recv of a frame cut short = %d bytes, %v", c.name, len(f), err)
		} else if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Errorf("%s: Recv: %v, want an unexpected EOF", c.name, err)
		}
		if (asked == 1) != c.placed || asked > 1 {
			t.Errorf("%s: place asked %d times", c.name, asked)
		}
		server.Close()
	}
}

// FuzzRecvPlaced streams what the fuzzer picks to a placing Recv, as a
// length and the bytes that follow it (more or fewer than it says), and
// checks that every frame Recv returns is what was sent, in the buffer
// place gave for it when place was asked, and shown to place by its
// first PlaceHead bytes; a stream cut short ends in an error, never a
// panic or a hang.
func FuzzRecvPlaced(f *testing.F) {
	f.Add(uint32(1<<20), []byte{TypeBundle, 0, 0, 0, 6, 0, 0, 0, 0, 0, 1}, uint32(1<<20))
	f.Add(uint32(2<<20), []byte{TypeRecordSet, 'D', 'X', 'R', 'S'}, uint32(1<<20))
	f.Add(uint32(1<<20+5), []byte{TypeBundle}, uint32(5<<20))
	f.Add(uint32(3<<20), []byte{}, uint32(4000))
	f.Add(uint32(100), []byte{1, 2, 3}, uint32(100))
	f.Fuzz(func(t *testing.T, length uint32, head []byte, fill uint32) {
		length = length%(4<<20) + 1
		fill %= 9 << 20
		if length < 64<<10 {
			fill %= 256 << 10 // not a million frames of a byte
		}
		sent := append(bytes.Clone(head), patterned(int(fill), byte(len(head)))...)
		a, b := net.Pipe()
		server := newTCPConn(a, 8<<20)
		defer server.Close()
		var heads [][]byte
		var bufs [][]byte
		server.SetFramePlace(func(h []byte, n int) []byte {
			heads = append(heads, bytes.Clone(h))
			buf := make([]byte, n+PlaceHead)
			bufs = append(bufs, buf)
			return buf[n%4093:]
		})
		go func() {
			defer b.Close()
			for rest := sent; ; {
				w := binary.BigEndian.AppendUint32(nil, length)
				n := min(int(length), len(rest))
				if _, err := b.Write(append(w, rest[:n]...)); err != nil || n < int(length) {
					return
				}
				rest = rest[n:]
			}
		}()
		for got := 0; ; {
			fr, err := server.Recv()
			if err != nil {
				if got+int(length) <= len(sent) {
					t.Fatalf("Recv failed with %d of %d bytes received and a whole frame sent: %v", got, len(sent), err)
				}
				return
			}
			if got+len(fr) > len(sent) || !bytes.Equal(fr, sent[got:got+len(fr)]) || len(fr) != int(length) {
				t.Fatalf("frame of %d bytes at %d is not what was sent", len(fr), got)
			}
			got += len(fr)
			if len(fr) < PlaceMin {
				continue
			}
			last := len(bufs) - 1
			if last < 0 || !bytes.Equal(heads[last], fr[:PlaceHead]) {
				t.Fatal("a frame of PlaceMin bytes was not shown to place by its head")
			}
			if &fr[0] != &bufs[last][len(fr)%4093] {
				t.Fatal("a placed frame is not where place put it")
			}
		}
	})
}
