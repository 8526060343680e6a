package journal

import (
	"syscall"

	"golang.org/x/sys/unix"

	"duplex/disk"
)

// setDirect switches f to O_DIRECT, so that what the journal writes goes
// from its aligned buffer to the device without a copy into the page cache
// and its writeback at Sync. It reports false, leaving f as it was, unless
// f is an operating-system file on a file system that takes direct writes
// aligned to directAlign in offset and memory (statx's STATX_DIOALIGN says
// which do; tmpfs and an Injector's files do not). A File that wraps an
// *os.File and keeps its SyscallConn counts as one, so that tests can fail
// a direct write part way.
func setDirect(f disk.File) bool {
	of, ok := f.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return false
	}
	rc, err := of.SyscallConn()
	if err != nil {
		return false
	}
	set := false
	rc.Control(func(fd uintptr) {
		if !disk.TakesDirect(fd) {
			return
		}
		flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err != nil {
			return
		}
		if _, err := unix.FcntlInt(fd, unix.F_SETFL, flags|unix.O_DIRECT); err != nil {
			return
		}
		set = true
	})
	return set
}
