package disk

import "golang.org/x/sys/unix"

// isDirect reports whether f is an operating-system file set O_DIRECT.
func isDirect(f File) bool {
	sc, ok := f.(syscallConner)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	direct := false
	rc.Control(func(fd uintptr) {
		flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		direct = err == nil && flags&unix.O_DIRECT != 0
	})
	return direct
}
