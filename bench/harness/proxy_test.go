package harness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"duplex/internal/testenv"
)

// TestProxyFaults checks the proxy itself: it forwards both ways, delays by
// the latency set, flips exactly the bits asked for, and cuts connections.
func TestProxyFaults(t *testing.T) {
	p, err := NewProxy("127.0.0.1:0", echoServer(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip := func(msg []byte) []byte {
		t.Helper()
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for n := 0; n < len(got); {
			m, err := c.Read(got[n:])
			if err != nil {
				t.Fatal(err)
			}
			n += m
		}
		return got
	}
	// A frame of 8 bytes: length prefix 4, then "abcd".
	frame := []byte{0, 0, 0, 4, 'a', 'b', 'c', 'd'}
	if got := roundTrip(frame); string(got) != string(frame) {
		t.Fatalf("forwarded %q, want %q", got, frame)
	}

	p.SetLatency(100 * time.Millisecond)
	start := time.Now()
	roundTrip(frame)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("round trip with 100ms each way took %s", d)
	}
	p.SetLatency(0)

	// 64 KiB each way at 256 KiB/s: at least a quarter second each way.
	p.SetRate(256 << 10)
	// One frame, so that the proxy's view of the framing stays in step.
	big := make([]byte, 64<<10)
	binary.BigEndian.PutUint32(big, uint32(len(big)-4))
	for i := 4; i < len(big); i++ {
		big[i] = byte(i)
	}
	start = time.Now()
	if got := roundTrip(big); string(got) != string(big) {
		t.Fatal("rate-limited round trip changed the data")
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("round trip of 64 KiB at 256 KiB/s each way took %s", d)
	}
	p.SetRate(0)

	p.Corrupt(ToSecondary, 1)
	if diff := bitsDiffer(roundTrip(frame), frame); diff != 1 {
		t.Errorf("Corrupt: %d bits differ, want 1", diff)
	}
	p.CorruptLength(ToSecondary)
	got := roundTrip(frame)
	if diff := bitsDiffer(got[:4], frame[:4]); diff != 1 || string(got[4:]) != "abcd" {
		t.Errorf("CorruptLength: got % x, want one bit flipped in the first 4 bytes of % x", got, frame)
	}

	p.Cut()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("read after Cut succeeded")
	}
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c2.Read(make([]byte, 1)); err == nil {
			t.Error("a connection made while cut was served")
		}
		c2.Close()
	}
	p.Restore()
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	c = c3
	if got := roundTrip(frame); string(got) != string(frame) {
		t.Fatalf("after Restore: forwarded %q, want %q", got, frame)
	}
	if n := p.Flipped.Load(); n != 2 {
		t.Errorf("Flipped = %d, want 2", n)
	}
}

func bitsDiffer(a, b []byte) int {
	if len(a) != len(b) {
		panic(fmt.Sprintf("lengths %d and %d", len(a), len(b)))
	}
	n := 0
	for i := range a {
		for x := a[i] ^ b[i]; x != 0; x &= x - 1 {
			n++
		}
	}
	return n
}

// TestProxyHang checks that a hung proxy answers nothing and delivers
// nothing sent while it was hung, on connections it had or made since,
// even once restored; and that a restored proxy forwards again.
func TestProxyHang(t *testing.T) {
	received := make(chan string, 100)
	p, err := NewProxy("127.0.0.1:0", echoServer(t, received))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// send writes msg and returns what comes back within wait, and the
	// read's error.
	send := func(c net.Conn, msg string, wait time.Duration) (string, error) {
		t.Helper()
		if _, err := c.Write([]byte(msg)); err != nil {
			return "", err
		}
		got := make([]byte, len(msg))
		c.SetReadDeadline(time.Now().Add(wait))
		n, err := c.Read(got)
		return string(got[:n]), err
	}
	before := dial()
	if got, err := send(before, "before", 5*time.Second); got != "before" {
		t.Fatalf("before the hang: got %q, %v", got, err)
	}
	<-received
	p.Hang()
	if got, err := send(before, "during", 300*time.Millisecond); got != "" || !isTimeout(err) {
		t.Fatalf("hung, a connection made before: got %q, %v; want no answer", got, err)
	}
	during := dial()
	if got, err := send(during, "made during", 300*time.Millisecond); got != "" || !isTimeout(err) {
		t.Fatalf("hung, a connection made meanwhile: got %q, %v; want no answer", got, err)
	}
	p.Restore()
	for _, c := range []net.Conn{before, during} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 64)); err == nil || isTimeout(err) {
			t.Fatalf("restored, a hung connection read %d bytes, %v; want it closed", n, err)
		}
	}
	after := dial()
	if got, err := send(after, "after", 5*time.Second); got != "after" {
		t.Fatalf("restored: got %q, %v", got, err)
	}
	if got := <-received; got != "after" {
		t.Fatalf("the target received %q after the hang; want only what was sent once restored", got)
	}
	select {
	case got := <-received:
		t.Fatalf("the target received %q as well", got)
	case <-time.After(100 * time.Millisecond):
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// echoServer listens until the test ends and returns its address: it
// sends back what it reads, after passing it to received if that is set.
func echoServer(t *testing.T, received chan<- string) string {
	t.Helper()
	return testenv.ServeConns(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if received != nil {
				received <- string(buf[:n])
			}
			c.Write(buf[:n])
		}
	})
}
