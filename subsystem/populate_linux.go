package subsystem

import (
	"syscall"
	"unsafe"
)

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14).
const madvPopulateWrite = 23

// populate faults b's pages in, writable, in one call: a fresh buffer's
// pages are otherwise faulted one at a time where the NBD server's read
// first writes them, a trap each: a quarter of the primary's CPU in a
// burst of 1 MiB writes, whose buffers are all fresh while the sidefile
// holds them. Best effort: a kernel without it faults the pages as before.
//
// The call is a raw one, which the runtime does not see as a system call:
// it does what the page faults it replaces would do (allocate, zero and map
// pages), and those hold the processor too. Through syscall.Madvise the
// runtime marked the goroutine as in a system call, and populating a
// megabyte (about 100 µs) outlasted the 20 µs after which its monitor
// thread takes the processor back and starts another thread to look for
// work: on a primary pinned to one CPU, a wake-up and two context switches
// per fresh buffer, and the monitor kept polling every 20 µs.
func populate(b []byte) {
	if len(b) == 0 {
		return
	}
	syscall.RawSyscall(syscall.SYS_MADVISE, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), madvPopulateWrite)
}
