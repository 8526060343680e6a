package timer

import (
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// StepFileEnv names the file whose offset the primary's common timer adds to
// the wall clock (see StepFile). Tests set it to step the clock of one
// primary process, which they cannot do to the system clock alone.
const StepFileEnv = "DUPLEX_CLOCK_STEP_FILE"

// stepFileRecheck is how often the file is read again: a step lands within it.
const stepFileRecheck = 10 * time.Millisecond

// StepFile returns a clock, for NewWithClock or OpenPersistent, that reads
// the wall clock plus the offset written in the file at path: a duration such
// as 3s or -1.5s. Rewriting the file (atomically, by a rename) steps the
// clock forward or back, as an NTP step or an operator's date command steps
// the system clock. A missing or unreadable file leaves the offset as it was
// (zero at first). The file is read at most once every 10ms, so a stamp
// costs no system call.
func StepFile(path string) func() int64 {
	var offset, readAt atomic.Int64
	start := time.Now()
	read := func() {
		b, err := os.ReadFile(path)
		if err != nil {
			return
		}
		if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
			offset.Store(int64(d))
		}
	}
	read()
	return func() int64 {
		now := time.Now()
		// Monotonic, so that a step of the system clock does not stop the
		// rereads.
		if since := int64(now.Sub(start)); since-readAt.Load() >= int64(stepFileRecheck) {
			readAt.Store(since)
			read()
		}
		return now.UnixNano() + offset.Load()
	}
}
