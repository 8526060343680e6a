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

// Requests queued back to back behind large WRITEs, of every size, each
// land whole where they were sent: after a large WRITE the read loop reads
// the next header alone and the payload straight into its buffer, and
// whatever follows it is read through the buffered reader as before.
func TestRequestsBehindLargeWrites(t *testing.T) {
	m := newMemExport(8 << 20)
	addr := startServer(t, &Server{Exports: exportMap{"rw": m}})
	r := rawDial(t, addr)
	r.open("rw")
	type write struct {
		off  uint64
		data []byte
	}
	pattern := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed + byte(i*7)
		}
		return b
	}
	writes := []write{
		{0, pattern(1<<20, 1)},
		{1 << 20, pattern(1<<20, 2)},
		{2 << 20, pattern(4096, 3)},
		{3 << 20, pattern(64<<10, 4)},
		{4 << 20, pattern(64<<10-1, 5)},
		{5 << 20, pattern(512, 6)},
		{6 << 20, pattern(1<<20, 7)},
	}
	var stream []byte
	for i, w := range writes {
		stream = append(stream, requestBytes(0, CmdWrite, uint64(i+1), w.off, uint32(len(w.data)), w.data)...)
	}
	stream = append(stream, requestBytes(0, CmdRead, 100, 2<<20, 4096, nil)...)
	stream = append(stream, requestBytes(0, CmdFlush, 101, 0, 0, nil)...)
	go r.nc.Write(stream) // the replies are read meanwhile
	seen := map[uint64]bool{}
	for range len(writes) + 2 {
		errno, cookie := r.reply()
		if errno != 0 || seen[cookie] {
			t.Fatalf("reply (cookie %d, error %d), seen before: %v", cookie, errno, seen[cookie])
		}
		seen[cookie] = true
		if cookie == 100 {
			if got := r.read(4096); !bytes.Equal(got, writes[2].data) && !bytes.Equal(got, make([]byte, 4096)) {
				t.Fatal("the READ queued behind the WRITEs returned neither the write nor zeroes")
			}
		}
	}
	for i, w := range writes {
		if got := m.snapshot(int(w.off), len(w.data)); !bytes.Equal(got, w.data) {
			t.Fatalf("write %d (%d bytes at %d) does not hold what was sent", i+1, len(w.data), w.off)
		}
	}
}
