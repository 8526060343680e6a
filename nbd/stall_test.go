package nbd

import (
	"bytes"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stall has the export's write at one offset hang in a system call, as a
// pwrite to a disk that stopped answering does (the thread held in the
// kernel, not a goroutine parked), until released.
type stall struct {
	t       *testing.T
	at      int64
	entered chan struct{}
	once    sync.Once
	fds     [2]int
	freed   sync.Once
}

func newStall(t *testing.T, m *memExport, at int64) *stall {
	s := &stall{t: t, at: at, entered: make(chan struct{})}
	if err := syscall.Pipe(s.fds[:]); err != nil {
		t.Fatal(err)
	}
	m.writeHook = func(off int64) {
		if off != s.at {
			return
		}
		s.once.Do(func() {
			close(s.entered)
			var b [1]byte
			syscall.Read(s.fds[0], b[:])
		})
	}
	t.Cleanup(func() {
		syscall.Close(s.fds[0])
		syscall.Close(s.fds[1])
	})
	return s
}

// releaseAtEnd has a write still hung when the test ends (it failed) let
// go before the server's Close, registered before, waits for it.
func (s *stall) releaseAtEnd() { s.t.Cleanup(s.release) }

func (s *stall) wait() {
	s.t.Helper()
	select {
	case <-s.entered:
	case <-time.After(10 * time.Second):
		s.t.Fatal("the write did not reach the export")
	}
}

func (s *stall) release() {
	s.freed.Do(func() { syscall.Write(s.fds[1], []byte{1}) })
}

// expectReplyWhileHung is expectReply for a request sent behind a write
// that hangs: a reply that does not come within 10 s fails the test (its
// request is not being read) rather than the client's 30 s deadline.
func (r *rawClient) expectReplyWhileHung(what string, cookie uint64, want Errno) {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer r.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	h := make([]byte, 16)
	if _, err := r.br.Read(h[:1]); err != nil {
		r.t.Fatalf("%s not answered while a write hangs in the export: %v", what, err)
	}
	r.br.UnreadByte()
	r.expectReply(cookie, want)
}

// TestAHungWriteServedWhereReadDoesNotHoldUpItsConnection: a write the
// Export promised not to wait, served on the read loop (alone at queue
// depth 1 or large with one processor, or with requests buffered behind
// it), whose volume write then hangs (a disk that stopped answering), does
// not hold up its connection: the READ and the FLUSH the client sends
// behind it are read and answered while it hangs, and so are the replies
// of the writes served before it in its batch; once the disk answers, the
// write is replied, its data in the export, and the connection serves on.
// The real runtime has a single processor in the "alone" and "large"
// cases, whose write hangs in a system call.
func TestAHungWriteServedWhereReadDoesNotHoldUpItsConnection(t *testing.T) {
	for _, c := range []struct {
		name string
		one  bool
		size uint32 // of the hung write, at offset 0
		// batch: the hung write is sent with a write before it and the
		// READ behind it, in one segment
		batch bool
	}{
		{name: "alone", one: true, size: 4096},
		{name: "large", one: true, size: 1 << 20},
		{name: "batch", size: 4096, batch: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			procs := 2
			if c.one {
				procs = 1
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			}
			prev := processors
			processors = func() int { return procs }
			t.Cleanup(func() { processors = prev })

			m := &promptExport{memExport: newMemExport(4 << 20)}
			s := newStall(t, m.memExport, 0)
			addr := startServer(t, &Server{Exports: exportMap{"rw": m}})
			s.releaseAtEnd()
			r := rawDial(t, addr)
			r.open("rw")
			old := bytes.Repeat([]byte{9}, 4096)
			r.request(0, CmdWrite, 100, 2<<20, 4096, old)
			r.expectReply(100, 0)
			prompted := m.prompted.Load()

			hung := bytes.Repeat([]byte{7}, int(c.size))
			if c.batch {
				var b []byte
				b = append(b, requestBytes(0, CmdWrite, 2, 3<<20, 4096, bytes.Repeat([]byte{3}, 4096))...)
				b = append(b, requestBytes(0, CmdWrite, 1, 0, c.size, hung)...)
				b = append(b, requestBytes(0, CmdRead, 3, 2<<20, 4096, nil)...)
				r.write(b)
				s.wait()
				r.expectReplyWhileHung("the write before the hung one in its batch", 2, 0)
			} else {
				r.request(0, CmdWrite, 1, 0, c.size, hung)
				s.wait()
				r.request(0, CmdRead, 3, 2<<20, 4096, nil)
			}
			r.expectReplyWhileHung("a READ", 3, 0)
			if got := r.read(4096); !bytes.Equal(got, old) {
				t.Fatal("the READ behind the hung write read the wrong data")
			}
			if got := m.prompted.Load() - prompted; c.batch && got != 2 || !c.batch && got != 1 {
				t.Fatalf("%d writes served on the read loop, want the hung one among them", got)
			}
			r.request(0, CmdFlush, 4, 0, 0, nil)
			r.expectReplyWhileHung("a FLUSH", 4, 0)

			s.release()
			r.expectReply(1, 0)
			if !bytes.Equal(m.snapshot(0, int(c.size)), hung) {
				t.Fatal("the hung write replied without its data in the export")
			}
			r.request(0, CmdWrite, 5, 4096, 4096, bytes.Repeat([]byte{5}, 4096))
			r.expectReply(5, 0)
			r.request(0, CmdRead, 6, 0, 4096, nil)
			r.expectReply(6, 0)
			if got := r.read(4096); !bytes.Equal(got, hung[:4096]) {
				t.Fatal("a READ after the hung write read the wrong data")
			}
			r.request(0, CmdDisc, 7, 0, 0, nil)
			r.expectClosed()
		})
	}
}

// TestADiscBehindAHungWriteIsRead: the DISC a client sends behind a write
// served on the read loop whose volume write hangs is read while it hangs
// (the connection leaves transmission at once, as it did when a worker
// held the write); the server waits for the write, replies it, and only
// then hangs up.
func TestADiscBehindAHungWriteIsRead(t *testing.T) {
	oneProcessor(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	if n := transmitting.Load(); n != 0 {
		t.Fatalf("%d connections in transmission before the test", n)
	}
	m := &promptExport{memExport: newMemExport(1 << 20)}
	s := newStall(t, m.memExport, 0)
	addr := startServer(t, &Server{Exports: exportMap{"rw": m}})
	s.releaseAtEnd()
	r := rawDial(t, addr)
	r.open("rw")
	r.request(0, CmdWrite, 1, 0, 4096, bytes.Repeat([]byte{7}, 4096))
	s.wait()
	if m.prompted.Load() != 1 {
		t.Fatal("the write was not served on the read loop")
	}
	r.request(0, CmdDisc, 2, 0, 0, nil)
	for deadline := time.Now().Add(10 * time.Second); transmitting.Load() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the DISC behind a hung write is not read while it hangs")
		}
	}
	s.release()
	r.expectReply(1, 0)
	r.expectClosed()
	if !bytes.Equal(m.snapshot(0, 4096), bytes.Repeat([]byte{7}, 4096)) {
		t.Fatal("the write before DISC is not in the export")
	}
}
