package journal

import (
	"syscall"

	"golang.org/x/sys/unix"

	"duplex/disk"
)

// oDirect is the open flag for reads that bypass the page cache.
const oDirect = unix.O_DIRECT

// setDirect switches f to O_DIRECT, so that what the journal writes goes
// from its aligned buffer to the device without a copy into the page cache
// and its writeback at Sync. It returns the grain of the pieces of a
// vectored direct write to f (disk.DirectGrain), and 0, leaving f as it
// was, unless f is an operating-system file on a file system that takes
// direct writes aligned to directAlign in offset and memory (statx's
// STATX_DIOALIGN says which do; tmpfs and an Injector's files do not). A
// File that wraps an *os.File and keeps its SyscallConn counts as one, so
// that tests can fail a direct write part way.
func setDirect(f disk.File) int {
	direct, _, grain := fitDirect(f)
	if !direct {
		return 0
	}
	return grain
}

// keepDirect reports whether reads of f, opened with O_DIRECT, bypass the
// page cache in blocks of directAlign. An operating-system file on a file
// system that does not say it takes direct I/O so aligned (the test
// setDirect makes) has O_DIRECT cleared and reads through the cache as
// before. A File that is not one, a wrapper that opened it, is taken as
// opened.
func keepDirect(f disk.File) bool {
	direct, osFile, _ := fitDirect(f)
	return direct || !osFile
}

// fitDirect sets O_DIRECT on f where its file system takes direct I/O
// aligned to directAlign (disk.TakesDirect), clears it elsewhere, and
// reports whether f has it then, and with what grain (disk.DirectGrain).
// osFile is false, and f left as it is, for a File that is not an
// operating-system file (no SyscallConn).
func fitDirect(f disk.File) (direct, osFile bool, grain int) {
	of, ok := f.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return false, false, 0
	}
	rc, err := of.SyscallConn()
	if err != nil {
		return false, true, 0
	}
	rc.Control(func(fd uintptr) {
		flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err != nil {
			return
		}
		want := flags &^ unix.O_DIRECT
		if grain = disk.DirectGrain(fd); grain != 0 {
			want |= unix.O_DIRECT
		}
		if want != flags {
			if _, err := unix.FcntlInt(fd, unix.F_SETFL, want); err != nil {
				return
			}
		}
		direct = want&unix.O_DIRECT != 0
	})
	return direct, true, grain
}

// setBuffered clears O_DIRECT on f, an operating-system file (anything
// else is left as it is): it is written and read through the page cache
// from then on.
func setBuffered(f disk.File) error {
	of, ok := f.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return nil
	}
	rc, err := of.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err != nil {
			ferr = err
			return
		}
		if flags&unix.O_DIRECT != 0 {
			_, ferr = unix.FcntlInt(fd, unix.F_SETFL, flags&^unix.O_DIRECT)
		}
	}); err != nil {
		return err
	}
	return ferr
}
