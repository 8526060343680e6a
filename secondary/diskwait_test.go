package secondary

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/apply"
	"duplex/disk"
	"duplex/internal/testenv"
)

// hungWrite is a volume whose writes wait until the gate opens, as they
// do on a disk that stopped answering.
type hungWrite struct {
	apply.Target
	started chan struct{} // receives once per write that begins
	gate    chan struct{} // closed: every write goes on
}

func (t hungWrite) WriteAt(p []byte, off int64) error {
	select {
	case t.started <- struct{}{}:
	default:
	}
	<-t.gate
	return t.Target.WriteAt(p, off)
}

// TestAHungDiskIsReported: a disk that stops answering, rather than
// failing, makes the journal's fsync of a group, or the group's writes to
// the volumes, wait without an error, for as long as it hangs. Nothing
// stops, and the primary gives the link up (it hears nothing), but the
// secondary said nothing of it: its status showed the link connected and
// no error, its log was silent. Once one has waited SlowDisk, status must
// say what waits on the disk and for which group, the log must warn, and
// once the disk answers status must say nothing more of it.
func TestAHungDiskIsReported(t *testing.T) {
	for _, tc := range []struct {
		name, want string
	}{
		{"journal fsync", "journaling group 1"},
		{"volume write", "applying group 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gfs := &syncGatedFS{FS: disk.OS, started: make(chan struct{}, 1), gate: make(chan struct{})}
			var once sync.Once
			open := func() { once.Do(func() { close(gfs.gate) }) }
			defer open()
			logs := &testenv.LogBuffer{}
			cfg := Config{FS: gfs, SlowDisk: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil))}
			var wrap func(apply.Target) apply.Target
			if tc.name == "volume write" {
				wrap = func(v apply.Target) apply.Target { return hungWrite{Target: v, started: gfs.started, gate: gfs.gate} }
			} else {
				gfs.armed.Store(true)
			}
			r := newLagRig(t, cfg, wrap)
			r.send(t, 1, false)
			select {
			case <-gfs.started:
			case <-time.After(30 * time.Second):
				t.Fatal("the disk was never waited on for group 1")
			}
			r.waitStats(t, 10*time.Second, func(st Stats) bool { return strings.Contains(st.DiskWait, tc.want) },
				"status to say that "+tc.want+" waits on the disk")
			waitFor(t, "the log to warn of the wait", func() bool {
				lg := logs.String()
				return strings.Contains(lg, "level=WARN") && strings.Contains(lg, "waiting on the disk")
			})
			open()
			r.waitStats(t, 30*time.Second, func(st Stats) bool { return st.Group >= 1 && st.DiskWait == "" },
				"group 1 applied and nothing said of the disk once it answers")
		})
	}
}
