package site

import (
	"net"
	"strings"
	"testing"
	"time"

	"duplex/nbd"
)

// TestTheExportsBetweenDiskRetriesSayWhy: between the attempts to open a
// secondary again after a disk fault no site is open, and nothing serves
// its read-only exports: a client (a backup reading the copy, a check
// mounting it) was refused the connection, as if no secondary were there.
// The NBD address answers instead, listing the exports, and refuses each
// at its handshake saying that the secondary opens again after a disk
// fault and to connect again once it has.
func TestTheExportsBetweenDiskRetriesSayWhy(t *testing.T) {
	r := retryingForGood(t, 200*time.Millisecond)
	addr := r.cfg.Secondary.NBD
	var last error
	defer func() {
		if t.Failed() {
			t.Logf("the last handshake: %v", last)
		}
	}()
	waitFor(t, 30*time.Second, "an NBD handshake refused saying why", func() bool {
		c, err := nbd.Dial(addr, "vol1")
		if err == nil {
			// An attempt that opened: it fails before it serves.
			c.Close()
			t.Fatalf("vol1 served between the attempts to open again")
		}
		last = err
		return strings.Contains(err.Error(), "opens again after a disk fault")
	})
	t.Logf("the handshake: %v", last)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("the NBD address between the attempts: %v", err)
	}
	nc.Close()
}
