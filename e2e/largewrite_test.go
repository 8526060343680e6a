package e2e

import (
	"bytes"
	"testing"
	"time"

	"duplex/nbd"
	"duplex/pair"
)

// A 64 MiB NBD WRITE, from a client that ignores the advertised 32 MiB
// maximum, through a primary whose sidefile holds only 8 MiB: the write
// streams through the sidefile in pieces and the secondary ends
// byte-identical.
func TestWrite64MiBThroughNBDReplicates(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("moves 64 MiB")
	}
	const volSize = 72 << 20
	cfg := newOpsConfig(t, volSize, 8<<20, time.Minute)
	cfg.Primary.NBD = "127.0.0.1:0"
	s := startOps(t, cfg)
	vol := cfg.VolumeNames()[0]
	s.waitState(vol, pair.Duplex, time.Minute)
	var addr string
	waitFor(t, 10*time.Second, "the NBD listener", func() bool { addr = s.prim.NBDAddr(); return addr != "" })
	c, err := nbd.Dial(addr, vol)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetMaxPayload(nbd.MaxAccepted)
	data := bytes.Repeat([]byte{0xab, 0x01, 0x02, 0x03, 0x04}, nbd.MaxAccepted/5+1)[:nbd.MaxAccepted]
	if err := c.WriteAt(data, 4096); err != nil {
		t.Fatalf("a 64 MiB WRITE through a primary with an 8 MiB sidefile: %v", err)
	}
	c.Close()
	s.assertImagesEqual()
}
