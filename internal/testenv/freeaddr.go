package testenv

import (
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
