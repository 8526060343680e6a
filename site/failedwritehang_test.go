package site

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
)

// TestAHungStateDiskAndAFailedFlushLetTheStopEnd: the disk of the
// primary's state directory stops answering, and at the stop vol2's
// flush fails: the activity log hands vol2's region over as a failed
// write, and its write of the change waits on the disk. The stop acts on
// the failed write before its drain, suspending vol2 with the region
// kept in the log; the log's lock is held by its write on the disk that
// does not answer. The stop still ends within its waits, not clean.
func TestAHungStateDiskAndAFailedFlushLetTheStopEnd(t *testing.T) {
	stopsWithAFailedFlush(t, false)
}

// TestAHungLeaseAndAFailedFlushLetTheStopEnd: as
// TestAHungStateDiskAndAFailedFlushLetTheStopEnd, but the stamps have
// reached the timer's lease on disk, a write waiting for the lease's
// write: the suspension of vol2 for its failed write stamps its marker,
// and would wait for the lease as long.
func TestAHungLeaseAndAFailedFlushLetTheStopEnd(t *testing.T) {
	stopsWithAFailedFlush(t, true)
}

func stopsWithAFailedFlush(t *testing.T, lease bool) {
	var failing atomic.Bool
	p, _, _, logs, stop := stateDiskHangingWith(t, time.Second, 0, func(o *PrimaryOptions) {
		o.beforeFlush = func(vol string) error {
			if vol == "vol2" && failing.Load() {
				return disk.EIO
			}
			return nil
		}
	})
	if lease {
		holdWritesOnTheLease(t, p)
	}
	failing.Store(true)
	var stopErr error
	within(t, 15*time.Second, "the stop", func() { stopErr = stop() })
	t.Logf("the stop: %v", stopErr)
	if stopErr == nil {
		t.Errorf("the stop with the state directory's disk hung and vol2's flush failed: nil error, want not clean")
	}
	if !strings.Contains(logs.String(), "vol2") {
		t.Errorf("the stop's log does not name vol2:\n%s", logs.String())
	}
}
