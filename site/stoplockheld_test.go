package site

import (
	"path/filepath"
	"testing"
	"time"

	"duplex/disk"
)

// TestAPrimarysStopKeepsItsLockUntilTheStateWritesItGaveUpEnd: the disk
// of the primary's state directory stops answering for one file only,
// the activity log (its writes) or the pair state (the rename of its
// save, already in the kernel), and the stop gives that write up and
// returns. The write lands whenever the disk answers: a next run let in
// before then (the LOCK free) would read the log or the pair state, and
// then find them replaced under it by this run's older ones. The LOCK
// is held until the disk answers, and let go then.
func TestAPrimarysStopKeepsItsLockUntilTheStateWritesItGaveUpEnd(t *testing.T) {
	for _, c := range []struct {
		what string
		hang func(h *stateDiskHang, dir string)
	}{
		{"the activity log's last write", func(h *stateDiskHang, dir string) {
			h.fs.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(dir, "activity.log"), Hang: h.held})
		}},
		{"the pair state's save", func(h *stateDiskHang, dir string) {
			h.fs.Inject(disk.Fault{Op: disk.OpRename, Under: filepath.Join(dir, "pairs.json"), Hang: h.held})
		}},
	} {
		t.Run(c.what, func(t *testing.T) {
			p, _, h, logs, stop := stateDiskHangingOf(t, 500*time.Millisecond, 0, nil, c.hang)
			var stopErr error
			within(t, 20*time.Second, "the stop", func() { stopErr = stop() })
			t.Logf("the stop: %v", stopErr)
			if len(logs.lines("has not ended")) == 0 {
				t.Errorf("the stop's log does not say it gave %s up:\n%s", c.what, logs.String())
			}
			lock, err := disk.OS.Lock(filepath.Join(p.stateDir, stateLockName))
			if err == nil {
				lock.Close()
				t.Errorf("the stopped primary let its LOCK go with %s under way", c.what)
			}
			h.release()
			awaitStateDirLetGo(t, p.cfg)
		})
	}
}
