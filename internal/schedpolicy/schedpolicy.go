// Package schedpolicy runs the primary's threads under the kernel's
// batch scheduling policy (SCHED_BATCH), which differs from the default
// only in that a thread woken up does not preempt the thread running on its
// CPU: it waits for that thread to block or to use up its time slice. Its
// share of the CPU (nice) is what it was.
//
// The Go runtime hands work between its threads by waking them (a goroutine
// made runnable while a processor is idle has the runtime wake a thread for
// it with a futex), and a Duplex daemon does so several times per request:
// the NBD read loop hands each request to a worker, the reply wakes the
// client, the volume's pwrite wakes the runtime's monitor. Under the
// default policy each wake-up on a busy CPU may preempt the thread that
// woke it, in the middle of the request it was serving, only for the woken
// thread to find little to do, spin, and sleep again: two context switches
// and the runtime's search for work, where the waker would have gone on to
// the next request. Under the batch policy the woken thread runs once the
// waker blocks, by when the waker has often done the work itself. At the
// primary, whole system on two shared CPUs, 4 KiB random writes at queue
// depth 16, the process's voluntary context switches per write fell from
// 0.57-0.64 to 0.19-0.28 and its CPU per write by about a third
// (bench/RESULTS.md).
//
// Only a process with two processors or more (GOMAXPROCS) is switched. With
// one, the process is pinned to a CPU it shares with others, a client among
// them: a request the client sent then waited for the client to block or
// use up its slice before the woken daemon ran (a primary pinned with fio
// on one CPU, 4 KiB random writes at queue depth 1: fio's median completion
// 30 µs against 3-4, at fewer IOPS).
//
// Only the primary calls it. The secondary was not measured apart, and its
// chain of hand-overs (receive, consistency, journal, apply,
// acknowledgement) is where wake-ups that wait would add to the lag: a first
// lag run with both daemons switched had a p99 of 609 ms against 109 (load
// 28, not repeated).
//
// A thread created later inherits its creator's policy, so switching every
// thread the process has once, early, covers the threads the runtime
// creates afterwards. It runs after package sysmon's re-execution, in the
// process that serves. A process started under a policy other than the
// default (by chrt, say: SCHED_IDLE, a real-time policy, or batch already)
// keeps it: that is the operator's choice. An error (EPERM from a
// container's seccomp profile, say) is the primary's to log: it starts all
// the same, under the default policy.
package schedpolicy

import "runtime"

// Batch switches every thread of the process that runs under the default
// policy to the batch policy, unless the process has a single processor.
// It reports how many it switched; an error leaves the others as they
// were, which is correct, if costlier per request.
func Batch() (int, error) {
	if runtime.GOMAXPROCS(0) < 2 {
		return 0, nil
	}
	return batch()
}
