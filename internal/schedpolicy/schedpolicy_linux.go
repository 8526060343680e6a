package schedpolicy

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxPasses bounds the passes over the process's threads: a thread created
// during a pass by one not switched yet is switched by the next.
const maxPasses = 4

func batch() (int, error) {
	switched := 0
	for range maxPasses {
		n, err := batchPass()
		switched += n
		if err != nil || n == 0 {
			return switched, err
		}
	}
	return switched, nil
}

// batchPass switches the threads under the default policy once, and
// reports how many.
func batchPass() (int, error) {
	tids, err := threads()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, tid := range tids {
		attr, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			if err == unix.ESRCH {
				continue // the thread ended meanwhile
			}
			return n, fmt.Errorf("scheduling policy: thread %d: %w", tid, err)
		}
		policy, ok := switchTo(attr.Policy)
		if !ok {
			continue
		}
		// The nice value stays as it was: only the wake-up behaviour
		// changes.
		set := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy, Nice: attr.Nice}
		if err := unix.SchedSetAttr(tid, &set, 0); err != nil {
			if err == unix.ESRCH {
				continue
			}
			return n, fmt.Errorf("scheduling policy: thread %d: %w", tid, err)
		}
		n++
	}
	return n, nil
}

// threads returns the ids of the process's threads.
func threads() ([]int, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("scheduling policy: list threads: %w", err)
	}
	tids := make([]int, 0, len(tasks))
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// switchTo returns the policy a thread under policy is switched to, and
// whether it is switched: only the default policy is.
func switchTo(policy uint32) (uint32, bool) {
	if policy != unix.SCHED_NORMAL {
		return policy, false
	}
	return unix.SCHED_BATCH, true
}
