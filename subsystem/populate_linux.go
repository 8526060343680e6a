package subsystem

import "syscall"

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14).
const madvPopulateWrite = 23

// populate faults b's pages in, writable, in one call: a fresh buffer's
// pages are otherwise faulted one at a time where the NBD server's read
// first writes them, a trap each: a quarter of the primary's CPU in a
// burst of 1 MiB writes, whose buffers are all fresh while the sidefile
// holds them. Best effort: a kernel without it faults the pages as before.
func populate(b []byte) {
	syscall.Madvise(b, madvPopulateWrite)
}
