package site

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/nbd"
)

// TestAPromotedSitesStatusSaysWhatWaitsOnItsStateDisk: the disk of a
// promoted site's promotion directory stops answering. A client's write
// to a region not yet changed waits for the changed regions' log, and
// the stamps, once they reach the timer's lease on disk, for its renewal;
// once each has waited slowDisk, the status says so (DISK-WAIT), as the
// primary's does, and the metrics; once the disk answers, neither.
func TestAPromotedSitesStatusSaysWhatWaitsOnItsStateDisk(t *testing.T) {
	h := newStateDiskHang()
	p, _, _ := runPromotedSite(t, PromotedOptions{FS: h.fs, slowDisk: 200 * time.Millisecond})
	c, err := nbd.Dial(p.NBDAddr(), "vol1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Cleanup(h.release) // before the client's close and the stop, which wait for the write
	h.hang(PromotedDir(p.cfg))
	wrote := make(chan error, 1)
	go func() { wrote <- c.WriteAt(bytes.Repeat([]byte{0x62}, 4096), 1<<19) }()
	var stamping atomic.Bool
	stamping.Store(true)
	stamped := make(chan struct{})
	t.Cleanup(func() { stamping.Store(false) })
	go func() {
		defer close(stamped)
		for stamping.Load() {
			p.timer.Now()
			time.Sleep(time.Millisecond)
		}
	}()
	waitFor(t, 20*time.Second, "the status to say the changed regions' log and the timer's lease wait on the disk", func() bool {
		w := p.Status().DiskWait
		return strings.Contains(w, "changed regions' log write") && strings.Contains(w, "1 client writes waiting") && strings.Contains(w, "timer lease write")
	})
	t.Logf("DISK-WAIT: %s", p.Status().DiskWait)
	m := sampleMap(p.samples())
	for _, name := range []string{"activity_log_write_seconds", "activity_log_waiting_writes", "timer_lease_write_seconds"} {
		if m[name].Value <= 0 {
			t.Errorf("metric %s is %v while its write waits on the disk", name, m[name].Value)
		}
	}
	h.release()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client's write has not ended 10s after the disk answered")
	}
	stamping.Store(false)
	<-stamped
	waitFor(t, 10*time.Second, "the status to say nothing waits on the disk once it answers", func() bool { return p.Status().DiskWait == "" })
}
