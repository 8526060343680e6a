package harness

import (
	"net"
	"strconv"
	"testing"
)

// The kernel hands out ports of its ephemeral range to every process that
// binds port 0 or connects: a port picked there ahead of time and closed can
// be taken before the daemon binds it. FreeAddrs picks outside that range,
// and never the same port twice while a picker holds it, in this process or
// another.
func TestFreeAddrsAvoidTheEphemeralRangeAndEachOther(t *testing.T) {
	lo, hi := ephemeralRange()
	a, err := FreeAddrs(40)
	if err != nil {
		t.Fatal(err)
	}
	b, err := FreeAddrs(40)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, addr := range append(a, b...) {
		if seen[addr] {
			t.Fatalf("%s picked twice", addr)
		}
		seen[addr] = true
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(p)
		if port >= lo && port <= hi {
			t.Fatalf("%s lies in the ephemeral range %d-%d: any process binding port 0 or connecting may take it first", addr, lo, hi)
		}
		// Still free to bind: the reservation holds no socket.
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		ln.Close()
	}
}
