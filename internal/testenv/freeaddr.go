package testenv

import (
	"net"
	"strconv"
	"testing"

	"duplex/internal/freeport"
)

// FreeAddr returns a loopback address for a listener that a daemon or a
// site binds later, perhaps again after a kill or a stop (see freeport: a
// port closed and bound again may be taken meanwhile by any process binding
// port 0). A listener the test binds itself and keeps open needs none of
// this: port 0 is right there.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addrs, err := freeport.Addrs(1)
	if err != nil {
		t.Fatal(err)
	}
	return addrs[0]
}

// CheckReserved fails t unless addr is an address FreeAddr could have
// handed out: a fixed loopback port outside the ephemeral range, bindable
// now. A config a test restarts a site on checks its listeners with it.
func CheckReserved(t testing.TB, addr string) {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	if lo, hi := freeport.Range(); port < lo || port > hi {
		t.Fatalf("%s: not a reserved port (%d-%d): a site started again there binds a port the kernel may have handed to any other process meanwhile (port 0, or the ephemeral range)", addr, lo, hi)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s reserved but not bindable: %v", addr, err)
	}
	ln.Close()
}
