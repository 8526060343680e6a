package nbd

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// A socket's reads and writes go through syscall.RawConn with raw system
// calls. The socket is non-blocking, so a call never waits (the RawConn
// waits for readiness in the runtime's poller instead), and a raw call skips
// what the runtime does around a system call that may block: marking the
// goroutine as in a system call, and waking the runtime's monitor thread,
// which then polls every 20 µs for a while to take the processor back. At
// queue depth 1 the server goes idle between requests, so with ordinary
// calls every request woke the monitor at least once.

// rawSocket returns a reader and a writer over nc's socket, or ok false when
// nc has none (a net.Pipe in tests), in which case nc itself serves.
func rawSocket(nc net.Conn) (r *rawReader, w buffersWriter, ok bool) {
	sc, isSC := nc.(syscall.Conn)
	if !isSC {
		return nil, nil, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, nil, false
	}
	rr := &rawReader{rc: rc}
	rr.fn = rr.readOnce
	rr.pollFn = rr.pollOnce
	rw := &rawWriter{rc: rc}
	rw.fn = rw.writeOnce
	rw.tryFn = rw.tryOnce
	return rr, rw, true
}

// rawReader reads the socket. It is used by one goroutine at a time (the
// connection's read loop, through its bufio.Reader).
type rawReader struct {
	rc     syscall.RawConn
	fn     func(fd uintptr) bool // readOnce, bound once so a Read allocates nothing
	pollFn func(fd uintptr)      // pollOnce
	wait   syscall.Timespec      // pollOnce's timeout
	ready  bool                  // pollOnce's result
	p      []byte
	n      int
	err    syscall.Errno
	// limit, if not 0, bounds the next Read, and only it.
	limit int
}

func (r *rawReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.limit > 0 && len(p) > r.limit {
		p = p[:r.limit]
	}
	r.limit = 0
	r.p, r.n, r.err = p, 0, 0
	err := r.rc.Read(r.fn)
	r.p = nil
	switch {
	case err != nil:
		return 0, err
	case r.err != 0:
		return 0, os.NewSyscallError("read", r.err)
	case r.n == 0:
		return 0, io.EOF
	}
	return r.n, nil
}

// waitReadable waits up to d in poll(2) for the socket to have data to
// read, and reports whether it has. It is an ordinary system call, not a raw
// one: the runtime can take the processor back while it waits.
func (r *rawReader) waitReadable(d time.Duration) bool {
	r.wait = syscall.NsecToTimespec(int64(d))
	r.ready = false
	if r.rc.Control(r.pollFn) != nil {
		return false
	}
	return r.ready
}

func (r *rawReader) pollOnce(fd uintptr) {
	pfd := pollFd{fd: int32(fd), events: pollIn}
	n, _, e := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&r.wait)), 0, 0, 0)
	r.ready = e == 0 && n == 1
}

// pollFd is struct pollfd.
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

const pollIn = 0x1

// readOnce makes one read; false means the socket has nothing yet.
func (r *rawReader) readOnce(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(r.p))), uintptr(len(r.p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case 0:
			r.n = int(n)
		default:
			r.err = e
		}
		return true
	}
}

// rawWriter writes replies with writev. It is used by one goroutine at a
// time (the reply writer of the moment).
type rawWriter struct {
	rc    syscall.RawConn
	fn    func(fd uintptr) bool // writeOnce
	tryFn func(fd uintptr) bool // tryOnce
	vecs  []syscall.Iovec       // reused between writes
	iov   []syscall.Iovec       // what is left to write, within vecs
	err   syscall.Errno
}

// maxIovecs is the most buffers one writev takes (the kernel's UIO_MAXIOV).
const maxIovecs = 1024

// writeBuffers writes every byte of bufs, or fails.
func (w *rawWriter) writeBuffers(bufs [][]byte) error {
	w.load(bufs)
	return w.finish()
}

// tryBuffers writes what of bufs the socket takes without waiting; finish
// writes the rest.
func (w *rawWriter) tryBuffers(bufs [][]byte) (bool, error) {
	w.load(bufs)
	err := w.rc.Write(w.tryFn)
	if err == nil && w.err == 0 && len(w.iov) > 0 {
		return false, nil
	}
	return true, w.done(err)
}

// finish writes what is left of the buffers loaded, waiting for room.
func (w *rawWriter) finish() error { return w.done(w.rc.Write(w.fn)) }

func (w *rawWriter) load(bufs [][]byte) {
	w.vecs = w.vecs[:0]
	for _, b := range bufs {
		if len(b) > 0 {
			w.vecs = append(w.vecs, syscall.Iovec{Base: unsafe.SliceData(b), Len: uint64(len(b))})
		}
	}
	w.iov, w.err = w.vecs, 0
}

// done ends a write that returned err.
func (w *rawWriter) done(err error) error {
	clear(w.vecs) // drop the references to the buffers
	w.iov = nil
	switch {
	case err != nil:
		return err
	case w.err != 0:
		return os.NewSyscallError("writev", w.err)
	}
	return nil
}

// tryOnce is writeOnce that does not wait for room.
func (w *rawWriter) tryOnce(fd uintptr) bool {
	w.writeOnce(fd)
	return true
}

// writeOnce writes what the socket takes; false means it must wait for room.
func (w *rawWriter) writeOnce(fd uintptr) bool {
	for len(w.iov) > 0 {
		iov := w.iov[:min(len(w.iov), maxIovecs)]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		switch e {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			w.err = e
			return true
		}
		w.consume(int(n))
	}
	return true
}

// consume drops the first n bytes written from the iovecs.
func (w *rawWriter) consume(n int) {
	i := 0
	for i < len(w.iov) && n >= int(w.iov[i].Len) {
		n -= int(w.iov[i].Len)
		i++
	}
	w.iov = w.iov[i:]
	if n > 0 {
		w.iov[0].Base = (*byte)(unsafe.Add(unsafe.Pointer(w.iov[0].Base), n))
		w.iov[0].Len -= uint64(n)
	}
}
