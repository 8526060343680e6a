package harness

import (
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"
)

// TestProxyFaults checks the proxy itself: it forwards both ways, delays by
// the latency set, flips exactly the bits asked for, and cuts connections.
func TestProxyFaults(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					c.Write(buf[:n])
				}
			}()
		}
	}()
	p, err := NewProxy("127.0.0.1:0", echo.Addr().String())
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
