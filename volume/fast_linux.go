package volume

import (
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The users' small reads and writes are served, when they cannot block, by
// raw system calls, which skip what the runtime does around a call that may
// block: marking the goroutine as in a system call and waking the runtime's
// monitor thread, which then polls every 20 µs for a while to take the
// processor back. A server that goes idle between requests (queue depth 1)
// otherwise wakes the monitor on every request.

// fastOp carries one raw call's arguments and results through the file's
// RawConn.Control, which keeps the descriptor open during the call without
// serializing it with other reads (as RawConn.Read would: ReadAt, a pread,
// may run concurrently with any other). Pooled, with its method bound once,
// so a call allocates nothing.
type fastOp struct {
	p    []byte
	off  int64
	n    int
	err  syscall.Errno
	read func(fd uintptr)
}

var fastOps = sync.Pool{New: func() any {
	o := &fastOp{}
	o.read = o.readNowait
	return o
}}

// readCached reads, with preadv2(RWF_NOWAIT), the start of p at off from the page cache without
// blocking, and returns how many bytes it read: all of p when the page cache
// holds the range, fewer (down to 0) when it does not, or the call failed or
// is not supported; the caller reads the rest the ordinary way.
func (v *Volume) readCached(p []byte, off int64) int {
	if v.rc == nil || len(p) == 0 || v.noNowait.Load() {
		return 0
	}
	o := fastOps.Get().(*fastOp)
	o.p, o.off, o.n, o.err = p, off, 0, 0
	if err := v.rc.Control(o.read); err != nil {
		o.n = 0
	}
	n, errno := o.n, o.err
	o.p = nil
	fastOps.Put(o)
	if errno == syscall.EOPNOTSUPP || errno == syscall.ENOSYS || errno == syscall.EINVAL {
		v.noNowait.Store(true)
	}
	return n
}

func (o *fastOp) readNowait(fd uintptr) {
	for o.n < len(o.p) {
		rest := o.p[o.n:]
		iov := syscall.Iovec{Base: unsafe.SliceData(rest), Len: uint64(len(rest))}
		n, _, e := syscall.RawSyscall6(unix.SYS_PREADV2, fd, uintptr(unsafe.Pointer(&iov)), 1,
			uintptr(o.off+int64(o.n)), 0, unix.RWF_NOWAIT)
		switch {
		case e == syscall.EINTR:
			continue
		case e != 0:
			o.err = e
			return
		case n == 0:
			return
		}
		o.n += int(n)
	}
}

// rawConn returns f's RawConn, or nil.
func rawConn(f *os.File) syscall.RawConn {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
