package testenv

import "testing"

// An address from FreeAddr is one a daemon can bind later, and again after
// a restart: bindable now, never the same twice, and outside the kernel's
// ephemeral range.
func TestFreeAddrIsBindableAndOutsideTheEphemeralRange(t *testing.T) {
	seen := map[string]bool{}
	for range 8 {
		addr := FreeAddr(t)
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		CheckReserved(t, addr)
	}
}
