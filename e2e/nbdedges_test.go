package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"

	"duplex/nbd"
)

// TestLibnbdEdgesAndHalfPayloads asks the primary, with libnbd's client
// (its own checks off), for writes, zeroes, trims and reads at and past the
// end of an export, of length zero and with flags their command does not
// take, and writes odd pieces at odd offsets over 16 connections at once,
// flushed from one and read back from another (testdata/nbdedges.py); then
// it sends the headers of writes and half their payloads and hangs up.
// Every refusal is the one the protocol asks for and leaves the connection
// usable, the pieces read back as written, a write cut off is never
// applied, and after a drain the secondary equals the primary, with the
// export's end and every cut-off write's range as they were before.
func TestLibnbdEdgesAndHalfPayloads(t *testing.T) {
	t.Parallel()
	needLibnbdPython(t)
	const volSize = 16 << 20
	s := newSession(t, sessionOpts{name: "e2e-nbdedges", volSize: volSize})
	s.start()

	// The export's last 64 KiB and the ranges of the cut-off writes hold
	// a pattern no request of the test may change.
	const cutOff = 4 << 20
	old := bytes.Repeat([]byte("untouched "), 64<<10/10+1)[:64<<10]
	c := dialNBD(t, s.cfg.Primary.NBD, "vol2")
	for _, off := range []int64{volSize - 64<<10, cutOff, cutOff + 1<<20} {
		if err := c.WriteAtFUA(old, off); err != nil {
			t.Fatal(err)
		}
	}

	const scratch = 8 << 20
	out, err := exec.Command(libnbdPython, "-I", "-B", "testdata/nbdedges.py", nbdURI(s.cfg.Primary.NBD, "vol2"),
		"--conns", "16", "--scratch", fmt.Sprint(scratch)).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("done")) {
		t.Fatalf("nbdedges.py: %v\n%s", err, out)
	}

	// Writes cut off in their payload: a plain one, and one with FUA after
	// a write that completes, on a connection of its own each.
	for i, flags := range []uint16{0, nbd.CmdFlagFUA} {
		nc, err := net.Dial("tcp", s.cfg.Primary.NBD)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nbd.NewClient(nc, "vol2"); err != nil {
			t.Fatal(err)
		}
		off := uint64(cutOff + i<<20)
		var b []byte
		b = append(b, request(1, nbd.CmdWrite, 0, scratch, make([]byte, 512))...)
		b = append(b, request(2, nbd.CmdWrite, flags, off, bytes.Repeat([]byte{0xEE}, 64<<10))[:28+32<<10]...)
		if _, err := nc.Write(b); err != nil {
			t.Fatal(err)
		}
		nc.Close()
	}
	// A later connection finds the server serving, the cut-off ranges
	// unwritten.
	c = dialNBD(t, s.cfg.Primary.NBD, "vol2")
	got := make([]byte, len(old))
	for _, off := range []int64{cutOff, cutOff + 1<<20} {
		if err := c.ReadAt(got, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, old) {
			t.Errorf("vol2 at %d after a write cut off in its payload: %q..., want %q...", off, got[:16], old[:16])
		}
	}
	c.Close()

	s.drainPrimary()
	s.stopSecondary()
	s.assertImagesEqual()
	_, sec := s.volumePaths("vol2")
	f, err := os.Open(sec)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, off := range []int64{volSize - 64<<10, cutOff, cutOff + 1<<20} {
		if _, err := f.ReadAt(got, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, old) {
			t.Errorf("the secondary's vol2 at %d: %q..., want %q... (no request of the test may change it)", off, got[:16], old[:16])
		}
	}
}

// request is an NBD request header followed by payload.
func request(cookie uint64, typ, flags uint16, off uint64, payload []byte) []byte {
	b := make([]byte, 28, 28+len(payload))
	binary.BigEndian.PutUint32(b[0:], 0x25609513)
	binary.BigEndian.PutUint16(b[4:], flags)
	binary.BigEndian.PutUint16(b[6:], typ)
	binary.BigEndian.PutUint64(b[8:], cookie)
	binary.BigEndian.PutUint64(b[16:], off)
	binary.BigEndian.PutUint32(b[24:], uint32(len(payload)))
	return append(b, payload...)
}
