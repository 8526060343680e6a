package site

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"duplex/nbd"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/volume"
)

// roomTaken is a primary export whose sidefile another writer fills just
// after Prompt promised the write at off: the write the NBD server's read
// loop then makes would wait for room.
type roomTaken struct {
	*primaryExport
	off  int64
	take func()
}

func (r *roomTaken) Prompt(off int64, n int) bool {
	ok := r.primaryExport.Prompt(off, n)
	if ok && off == r.off {
		r.take()
	}
	return ok
}

type oneExport struct{ x nbd.Export }

func (e oneExport) Lookup(string) (nbd.Export, bool) { return e.x, true }
func (e oneExport) Names() []string                  { return []string{"v0"} }

// TestAPromisedWriteThatWouldWaitForRoomHoldsUpNoOtherRequest: with pacing
// off and the link down, a write the primary export promised, whose room
// in the sidefile another writer then takes, goes to a worker: the reply
// of the write served before it and the READ behind it are answered while
// it waits for room, and it is written once room comes, once.
func TestAPromisedWriteThatWouldWaitForRoomHoldsUpNoOtherRequest(t *testing.T) {
	const n = 4096
	vol, err := volume.Open(filepath.Join(t.TempDir(), "v0.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	side := sidefile.New(16 * sidefile.Cost(n))
	side.SetPacing(sidefile.Pacing{})
	ss := subsystem.New("ss1", timer.New(), side, map[string]*volume.Volume{"v0": vol}, []string{"v0"})
	x := &primaryExport{name: "v0", ss: ss, vol: vol}
	taken := make(chan struct{})
	exp := &roomTaken{primaryExport: x, off: n, take: func() {
		side.Take(side.Limit())
		close(taken)
	}}
	srv := &nbd.Server{Exports: oneExport{exp}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	released := false
	defer func() {
		if !released {
			side.Release(side.Limit())
		}
		srv.Close()
		<-served
	}()

	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	read := func(k int) []byte {
		t.Helper()
		b := make([]byte, k)
		if _, err := io.ReadFull(br, b); err != nil {
			t.Fatalf("reading %d bytes: %v", k, err)
		}
		return b
	}
	read(18)                                    // greeting
	hs := binary.BigEndian.AppendUint32(nil, 3) // fixed newstyle, no zeroes
	hs = binary.BigEndian.AppendUint64(hs, 0x49484156454F5054)
	hs = binary.BigEndian.AppendUint32(hs, 1) // NBD_OPT_EXPORT_NAME
	hs = binary.BigEndian.AppendUint32(hs, 2)
	hs = append(hs, "v0"...)
	if _, err := nc.Write(hs); err != nil {
		t.Fatal(err)
	}
	read(10) // size, flags

	req := func(b []byte, typ uint16, cookie uint64, off int64, data []byte) []byte {
		b = binary.BigEndian.AppendUint32(b, 0x25609513)
		b = binary.BigEndian.AppendUint16(b, 0)
		b = binary.BigEndian.AppendUint16(b, typ)
		b = binary.BigEndian.AppendUint64(b, cookie)
		b = binary.BigEndian.AppendUint64(b, uint64(off))
		b = binary.BigEndian.AppendUint32(b, n)
		return append(b, data...)
	}
	var b []byte
	b = req(b, nbd.CmdWrite, 0, 0, bytes.Repeat([]byte{1}, n))
	b = req(b, nbd.CmdWrite, 1, n, bytes.Repeat([]byte{2}, n)) // its room taken after its promise
	b = req(b, nbd.CmdRead, 2, 0, nil)
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
	reply := func() (errno uint32, cookie uint64) {
		t.Helper()
		h := read(16)
		if binary.BigEndian.Uint32(h) != 0x67446698 {
			t.Fatalf("bad reply % x", h)
		}
		return binary.BigEndian.Uint32(h[4:]), binary.BigEndian.Uint64(h[8:])
	}
	for i := range 2 {
		e, c := reply()
		if e != 0 || c == 1 {
			t.Fatalf("reply %d while the write at %d waits for room: error %d cookie %d", i, n, e, c)
		}
		if c == 2 {
			if got := read(n); !bytes.Equal(got, bytes.Repeat([]byte{1}, n)) {
				t.Fatalf("READ got %x..., want the first write's", got[:8])
			}
		}
	}
	<-taken
	side.Release(side.Limit())
	released = true
	if e, c := reply(); e != 0 || c != 1 {
		t.Fatalf("the write that waited for room: error %d cookie %d", e, c)
	}
	got := make([]byte, n)
	if err := vol.ReadAt(got, n); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.Repeat([]byte{2}, n)) {
		t.Fatalf("the write that waited for room: volume holds %x...", got[:8])
	}
	// Captured once, its room reserved once.
	if st := side.Stats(); st.Captured != 2 || st.Used != 2*sidefile.Cost(n) {
		t.Errorf("%d updates captured holding %d bytes, want 2 holding %d", st.Captured, st.Used, 2*sidefile.Cost(n))
	}
}
