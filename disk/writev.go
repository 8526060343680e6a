package disk

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// iovMax is the most buffers one pwritev takes (IOV_MAX on Linux).
const iovMax = 1024

// WriteV writes bufs back to back from off in f and returns the bytes
// written. An *os.File takes them with one pwritev per iovMax buffers, so
// that a record made of many pieces (a journaled group's header and the
// updates' data where they arrived) costs one system call rather than a
// copy into one buffer; one buffer is one pwrite. Any other file (an
// Injector's, which fails writes one at a time) gets one WriteAt per
// buffer. Errors are the system's, for the caller to name the file.
func WriteV(f io.WriterAt, bufs [][]byte, off int64) (int64, error) {
	of, ok := f.(*os.File)
	if !ok || len(bufs) == 1 {
		var n int64
		for _, b := range bufs {
			m, err := f.WriteAt(b, off+n)
			n += int64(m)
			if err != nil {
				return n, err
			}
		}
		return n, nil
	}
	rc, err := of.SyscallConn()
	if err != nil {
		return 0, err
	}
	bufs = append([][]byte(nil), bufs...) // stepped over below; the caller's stay
	var total int64
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), iovMax)]
		var n int
		var werr error
		cerr := rc.Write(func(fd uintptr) bool {
			for {
				n, werr = unix.Pwritev(int(fd), chunk, off)
				if werr != unix.EINTR {
					return true
				}
			}
		})
		if cerr != nil {
			werr = cerr
		}
		if werr != nil {
			return total, werr
		}
		if n == 0 && chunkLen(chunk) > 0 {
			return total, io.ErrShortWrite
		}
		// Step over what was written; a short write goes on from the
		// middle of a buffer.
		off += int64(n)
		total += int64(n)
		for len(bufs) > 0 && (n > 0 || len(bufs[0]) == 0) {
			if n < len(bufs[0]) {
				bufs[0] = bufs[0][n:]
				break
			}
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
	}
	return total, nil
}

func chunkLen(bufs [][]byte) (n int) {
	for _, b := range bufs {
		n += len(b)
	}
	return n
}
