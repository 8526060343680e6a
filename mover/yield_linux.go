package mover

import "syscall"

// lowerPriority gives the calling thread (PRIO_PROCESS of a thread id
// applies to that thread alone on Linux) the lowest priority, nice 19.
func lowerPriority() error {
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), 19)
}
