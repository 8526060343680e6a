package nbd

import (
	"bytes"
	"testing"

	"duplex/internal/testenv"
)

// MaxAccepted is what a client that ignores the advertised maximum may send.
func TestRequestsUpTo64MiBWhateverTheAdvertisedMaximum(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 64 MiB requests")
	}
	for _, tc := range []struct {
		name string
		max  uint32
	}{{"advertised 32 MiB", 0}, {"advertised 4 KiB", 4096}} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMemExport(MaxAccepted + 8192)
			addr := startServer(t, &Server{Exports: exportMap{"rw": m}, MaxRequest: tc.max})
			c, err := Dial(addr, "rw")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetMaxPayload(MaxAccepted)
			big := bytes.Repeat([]byte{0xab, 0xcd, 0xef}, MaxAccepted/3+1)[:MaxAccepted]
			if err := c.WriteAt(big, 4096); err != nil {
				t.Fatalf("a WRITE of %d bytes: %v", len(big), err)
			}
			if got := m.snapshot(4096, len(big)); !bytes.Equal(got, big) {
				t.Fatal("the export does not hold the 64 MiB write")
			}
			got := make([]byte, MaxAccepted)
			if err := c.ReadAt(got, 4096); err != nil {
				t.Fatalf("a READ of %d bytes: %v", len(got), err)
			}
			if !bytes.Equal(got, big) {
				t.Fatal("the 64 MiB read differs from the write")
			}

			// Beyond it, a READ fails and the connection carries on; a
			// WRITE closes it (its payload is not worth reading).
			r := rawDial(t, addr)
			r.open("rw")
			r.request(0, CmdRead, 1, 0, MaxAccepted+1, nil)
			r.expectReply(1, EINVAL)
			r.request(0, CmdRead, 2, 0, 512, nil)
			r.expectReply(2, 0)
			r.read(512)
			r.request(0, CmdWrite, 3, 0, MaxAccepted+1, nil)
			r.expectClosed()
		})
	}
}

// qemu-io, which honours the advertised maximum, writes and reads 64 MiB.
func TestQemuIO64MiB(t *testing.T) {
	testenv.NeedTool(t, "qemu-io", "qemu-utils")
	uri, disk, _ := toolServer(t)
	out := testenv.MustRunTool(t, "qemu-io", "-f", "raw", uri+"/disk",
		"-c", "write -P 0xab 0 64M",
		"-c", "read -P 0xab 0 64M",
	)
	if bytes.Contains([]byte(out), []byte("Pattern verification failed")) || bytes.Contains([]byte(out), []byte("error")) {
		t.Fatalf("qemu-io:\n%s", out)
	}
	got := make([]byte, 64<<20)
	if err := disk.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.Repeat([]byte{0xab}, len(got))) {
		t.Fatal("backing file differs from what qemu-io wrote")
	}
}
