package e2e

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
)

// TestFreeAddrAvoidsTheEphemeralRange: the tests that need a known address
// before a daemon starts (a promoted site's link, the status pages that link
// to each other) take it from freeAddr and have the daemon bind it later.
// An address the kernel handed out for port 0 lies in the ephemeral range,
// where any connection made meanwhile on this shared machine may take it as
// its local port, and the daemon then fails to bind: the flake the ports
// picked by listening and closing caused before (TestDaemonsRecover's
// "secondary.control ... is also secondary.listen"). harness.FreeAddrs
// picks below the range for that reason; freeAddr must too.
func TestFreeAddrAvoidsTheEphemeralRange(t *testing.T) {
	lo, hi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var l, h int
		if n, _ := fmt.Sscan(string(b), &l, &h); n == 2 && l > 0 && h >= l {
			lo, hi = l, h
		}
	}
	seen := map[string]bool{}
	for range 8 {
		addr := freeAddr(t)
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
			t.Fatalf("freeAddr gave %s, in the ephemeral range %d-%d: any connection made before the daemon binds it may take it", addr, lo, hi)
		}
	}
}
