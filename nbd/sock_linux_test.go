package nbd

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawSocketPair connects to itself over TCP on loopback and returns the
// raw reader of the accepted end, that end, and the dialling peer; both
// ends are closed at the end of the test.
func rawSocketPair(t *testing.T) (*rawReader, net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	rr, _, ok := rawSocket(nc)
	if !ok {
		t.Fatal("no raw socket under a TCP connection")
	}
	return rr, nc, peer
}

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

// The read loop waits for the client's next request in poll(2) on the raw
// socket under the runtime's poller: the wait must report data and a peer
// that hung up (so the read that follows sees EOF rather than stalling),
// time out on an empty socket, and refuse a socket already closed here
// instead of polling a descriptor number that may be reused.
func TestWaitReadable(t *testing.T) {
	rr, nc, peer := rawSocketPair(t)
	if rr.waitReadable(time.Millisecond) {
		t.Fatal("empty socket reported readable")
	}
	if _, err := peer.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	// Bounded by the data's arrival on loopback, not by a clock: retry
	// until it is there rather than asserting how soon.
	for !rr.waitReadable(10 * time.Millisecond) {
	}
	b := make([]byte, 1)
	if n, err := rr.Read(b); n != 1 || err != nil {
		t.Fatalf("read after readable: %d, %v", n, err)
	}
	peer.Close()
	for !rr.waitReadable(10 * time.Millisecond) {
	}
	if _, err := rr.Read(b); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the peer hung up: %v, want EOF", err)
	}
	nc.Close()
	if rr.waitReadable(time.Millisecond) {
		t.Fatal("closed socket reported readable")
	}
}

// A limit bounds the next read, and only it: the read loop reads the header
// after a large WRITE alone, and then reads on as usual.
func TestRawReaderLimitBoundsOneRead(t *testing.T) {
	rr, _, peer := rawSocketPair(t)
	sent := bytes.Repeat([]byte("0123456789"), 10)
	if _, err := peer.Write(sent); err != nil {
		t.Fatal(err)
	}
	// Wait until all of it is there, so that an unbounded read would
	// take it all.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if !rr.waitReadable(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("nothing to read")
			}
			continue
		}
		var n int32
		if err := rr.rc.Control(func(fd uintptr) {
			syscall.Syscall(syscall.SYS_IOCTL, fd, unix.SIOCINQ, uintptr(unsafe.Pointer(&n)))
		}); err != nil {
			t.Fatal(err)
		}
		if int(n) == len(sent) {
			break
		}
	}
	buf := make([]byte, 1024)
	rr.limit = requestHeaderLen
	n, err := rr.Read(buf)
	if err != nil || n != requestHeaderLen {
		t.Fatalf("read with a limit of %d: %d bytes, %v", requestHeaderLen, n, err)
	}
	got := append([]byte(nil), buf[:n]...)
	n, err = rr.Read(buf)
	if err != nil || n != len(sent)-requestHeaderLen {
		t.Fatalf("the read after it: %d bytes, %v, want the other %d", n, err, len(sent)-requestHeaderLen)
	}
	if got = append(got, buf[:n]...); !bytes.Equal(got, sent) {
		t.Fatalf("read %q, sent %q", got, sent)
	}
}

// tryBuffers writes what a socket whose peer reads nothing takes, without
// waiting for room, and finish writes the rest once the peer reads: every
// byte arrives, in order.
func TestRawWriterTryDoesNotWaitForThePeer(t *testing.T) {
	_, nc, peer := rawSocketPair(t)
	_, w, _ := rawSocket(nc)
	tw := w.(tryWriter)
	// More than loopback's socket buffers hold, in pieces of every size.
	var bufs [][]byte
	var all []byte
	for i := 0; len(all) < 64<<20; i++ {
		b := bytes.Repeat([]byte{byte(i)}, 1+i*7919%(1<<20))
		bufs = append(bufs, b)
		all = append(all, b...)
	}
	tried := make(chan bool, 1)
	go func() {
		done, err := tw.tryBuffers(bufs)
		if err != nil {
			t.Error(err)
		}
		tried <- done
	}()
	select {
	case done := <-tried:
		if done {
			t.Fatalf("%d bytes written, the peer reading nothing", len(all))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tryBuffers waited for the peer to read")
	}
	finished := make(chan error, 1)
	go func() { finished <- tw.finish() }()
	got, err := io.ReadAll(io.LimitReader(peer, int64(len(all))))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-finished; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, all) {
		t.Fatal("the peer read other bytes than were written")
	}
	if done, err := tw.tryBuffers([][]byte{[]byte("small")}); !done || err != nil {
		t.Fatalf("a small write to a socket with room: done %v, %v", done, err)
	}
	nc.Close()
	if done, err := tw.tryBuffers([][]byte{[]byte("closed")}); !done || err == nil {
		t.Fatalf("a write to a closed socket: done %v, %v", done, err)
	}
}
