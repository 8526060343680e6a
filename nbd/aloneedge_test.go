package nbd

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
)

// TestALoneFUAWriteIsDurableBeforeItsReplyWithOneProcessor: with a single
// processor, a lone write with FUA is not served on the read loop (which
// has no flush), but by a worker that flushes before it replies; a lone
// write served on the read loop is covered by the FLUSH that follows it.
// The lone write comes first: a worker releases its place in flight only
// after its reply is written, so a write the client sends as soon as the
// FUA write's reply arrives may still find it in flight, and rightly go to
// a worker too.
func TestALoneFUAWriteIsDurableBeforeItsReplyWithOneProcessor(t *testing.T) {
	oneProcessor(t)
	m := &promptExport{memExport: newMemExport(1 << 20)}
	r := openPrompt(t, m)
	r.request(0, CmdWrite, 1, 4096, 4096, bytes.Repeat([]byte{2}, 4096))
	r.expectReply(1, 0)
	if got := m.prompted.Load(); got != 1 {
		t.Fatalf("a lone write asked of the Prompter %d times, want 1", got)
	}
	if got := m.flushCount(); got != 0 {
		t.Fatalf("a lone write without FUA flushed %d times", got)
	}
	r.request(CmdFlagFUA, CmdWrite, 2, 0, 4096, bytes.Repeat([]byte{1}, 4096))
	r.expectReply(2, 0)
	if got := m.flushCount(); got != 1 {
		t.Fatalf("a FUA write replied after %d flushes, want 1", got)
	}
	if got := m.prompted.Load(); got != 1 {
		t.Fatalf("a FUA write asked of the Prompter (%d asks in all, want 1)", got)
	}
	r.request(0, CmdFlush, 3, 0, 0, nil)
	r.expectReply(3, 0)
	if got := m.flushCount(); got != 2 {
		t.Fatalf("a FLUSH replied after %d flushes, want 2", got)
	}
}

// TestALoneWriteRepliesItsErrorWithOneProcessor: a lone write served on the
// read loop replies the Export's error as a worker would: EIO for a failed
// disk, ENOSPC for a full one; a write past the end gets ENOSPC without the
// Prompter being asked; the connection serves on.
func TestALoneWriteRepliesItsErrorWithOneProcessor(t *testing.T) {
	oneProcessor(t)
	m := &promptExport{memExport: newMemExport(1 << 20)}
	r := openPrompt(t, m)
	for i, c := range []struct {
		err  error
		want Errno
	}{{syscall.EIO, EIO}, {&net.OpError{Op: "write", Err: syscall.ENOSPC}, ENOSPC}, {nil, 0}} {
		m.mu.Lock()
		m.err = c.err
		m.mu.Unlock()
		r.request(0, CmdWrite, uint64(i), 0, 4096, bytes.Repeat([]byte{byte(i + 1)}, 4096))
		r.expectReply(uint64(i), c.want)
	}
	prompted := m.prompted.Load()
	r.request(0, CmdWrite, 9, 1<<20-2048, 4096, make([]byte, 4096))
	r.expectReply(9, ENOSPC)
	if got := m.prompted.Load(); got != prompted {
		t.Fatalf("a write past the end asked of the Prompter")
	}
	if got := m.prompted.Load(); got != 3 {
		t.Fatalf("%d lone writes asked of the Prompter, want 3", got)
	}
}

// TestALoneWriteThenDiscWithOneProcessor: the write before a DISC is in the
// Export and replied before the server hangs up.
func TestALoneWriteThenDiscWithOneProcessor(t *testing.T) {
	oneProcessor(t)
	m := &promptExport{memExport: newMemExport(1 << 20)}
	r := openPrompt(t, m)
	r.request(0, CmdWrite, 1, 0, 4096, bytes.Repeat([]byte{7}, 4096))
	r.request(0, CmdDisc, 2, 0, 0, nil)
	r.expectReply(1, 0)
	r.expectClosed()
	if !bytes.Equal(m.snapshot(0, 4096), bytes.Repeat([]byte{7}, 4096)) {
		t.Fatal("the write before DISC is not in the export")
	}
}

// TestLoneWritesAndReadsOnManyConnectionsWithOneProcessor: clients at queue
// depth 1 on several connections, each writing then reading back its own
// blocks, get every reply whole and matched to its request and read what
// they wrote: a lone write served on one read loop, and its reply, do not
// mix with the READs' replies workers write meanwhile.
func TestLoneWritesAndReadsOnManyConnectionsWithOneProcessor(t *testing.T) {
	oneProcessor(t)
	m := &promptExport{memExport: newMemExport(1 << 20)}
	addr := startServer(t, &Server{Exports: exportMap{"rw": m}})
	const conns, rounds = 4, 300
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for k := range conns {
		r := rawDial(t, addr)
		r.open("rw")
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := make([]byte, 16)
			got := make([]byte, 4096)
			for i := range rounds {
				off := uint64(k*64+i%64) * 4096
				want := bytes.Repeat([]byte{byte(k*rounds + i)}, 4096)
				if _, err := r.nc.Write(requestBytes(0, CmdWrite, uint64(2*i), off, 4096, want)); err != nil {
					errs <- err
					return
				}
				if _, err := io.ReadFull(r.br, h); err != nil {
					errs <- err
					return
				}
				if binary.BigEndian.Uint32(h) != replyMagic || binary.BigEndian.Uint32(h[4:]) != 0 || binary.BigEndian.Uint64(h[8:]) != uint64(2*i) {
					errs <- fmt.Errorf("connection %d, write %d: reply % x", k, i, h)
					return
				}
				if _, err := r.nc.Write(requestBytes(0, CmdRead, uint64(2*i+1), off, 4096, nil)); err != nil {
					errs <- err
					return
				}
				if _, err := io.ReadFull(r.br, h); err != nil {
					errs <- err
					return
				}
				if binary.BigEndian.Uint32(h) != replyMagic || binary.BigEndian.Uint32(h[4:]) != 0 || binary.BigEndian.Uint64(h[8:]) != uint64(2*i+1) {
					errs <- fmt.Errorf("connection %d, read %d: reply % x", k, i, h)
					return
				}
				if _, err := io.ReadFull(r.br, got); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, want) {
					errs <- fmt.Errorf("connection %d, read %d: not the data its write acknowledged", k, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if m.prompted.Load() == 0 {
		t.Error("no write served on a read loop")
	}
}
