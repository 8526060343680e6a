package mover

import "syscall"

// lowerPriority gives the calling thread (PRIO_PROCESS of a thread id
// applies to that thread alone on Linux) the lowest priority, nice 19.
func lowerPriority() error { return setPriority(syscall.Gettid(), 19) }

// setPriority sets thread tid's nice value. Raising a priority (a lower
// nice) takes CAP_SYS_NICE or a RLIMIT_NICE that allows it.
func setPriority(tid, nice int) error {
	return syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice)
}

func threadID() int { return syscall.Gettid() }
