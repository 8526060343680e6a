package pair

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestTheStartTimesARecoveryReadFromItsCapture: the start's wait for a
// recovery copy's read runs from the copy's capture, as the data mover's
// wait does, not from before its sidefile room and its activity-log mark
// (which a slow disk delays). Timed from before, the start gives the read
// up at CopyReadWait from a moment before its capture, and the mover's
// first cut, which times the same copy from its capture, waits the
// remainder again, every record set and, once the sidefiles fill, every
// writer with it. Here the capture lasts until the start's wait is armed
// (or a while): the wait must not be armed before.
func TestTheStartTimesARecoveryReadFromItsCapture(t *testing.T) {
	r := writtenSinceClean(t)
	r.ss.mu.Lock()
	before := len(r.ss.copies) // the first copies'
	r.ss.mu.Unlock()
	armed := make(chan struct{})
	var armOnce sync.Once
	var early []string
	var mu sync.Mutex
	r.opts.copyReadTimer = func(vol string, _ time.Duration) <-chan time.Time {
		r.ss.mu.Lock()
		captured := false
		for _, u := range r.ss.copies[before:] {
			captured = captured || u.Volume == vol
		}
		r.ss.mu.Unlock()
		if !captured {
			mu.Lock()
			early = append(early, vol)
			mu.Unlock()
		}
		armOnce.Do(func() { close(armed) })
		return nil // the read is done before any wait would run out
	}
	r.ss.mu.Lock()
	r.ss.capturing = func(string, int64) {
		select {
		case <-armed:
		case <-time.After(200 * time.Millisecond):
		}
	}
	r.ss.mu.Unlock()
	r.crash()
	mu.Lock()
	defer mu.Unlock()
	if len(early) != 0 {
		t.Fatalf("the start's wait for the recovery read of %v was armed before its copy was captured", early)
	}
	for _, vol := range []string{"a", "b"} {
		if p := r.pair(vol); p.State == Suspended {
			t.Fatalf("pair %s, its recovery reads done: %+v, want not suspended", vol, p)
		}
	}
}

// TestTheStartGivesUpNoReadOfASlowDiskServingThemOneAtATime: after a
// crash, the recovery copies of many volumes start together, and the one
// disk under them serves their reads one at a time, each quickly, all of
// them in longer than CopyReadWait. No read hangs: each is served in turn,
// and the start must wait for them all, suspending no pair. A read's wait
// timed from when the copies were launched, together, would give up those
// queued last, though the disk never stopped reading.
func TestTheStartGivesUpNoReadOfASlowDiskServingThemOneAtATime(t *testing.T) {
	servedOneAtATime(t, "reads", func(ss *memSubsystem, serve func(string, int64)) { ss.read = serve })
}

// TestTheStartGivesUpNoCaptureOfASlowDiskServingThemOneAtATime: as
// TestTheStartGivesUpNoReadOfASlowDiskServingThemOneAtATime, the disk
// serving in turn what the copies ask before their capture (their looks for
// a hole, their activity-log marks): the start's wait for a copy's capture,
// which a stuck disk may hold too, gives none up while the disk serves.
func TestTheStartGivesUpNoCaptureOfASlowDiskServingThemOneAtATime(t *testing.T) {
	servedOneAtATime(t, "captures", func(ss *memSubsystem, serve func(string, int64)) { ss.capturing = serve })
}

// servedOneAtATime crashes a rig of 40 volumes, each written since the
// log was clean, whose one disk serves what set hooks (the copies' reads
// or captures) one at a time, 20ms each, 800ms in all, CopyReadWait
// 500ms; it fails unless the start suspends no pair.
func servedOneAtATime(t *testing.T, what string, set func(ss *memSubsystem, serve func(string, int64))) {
	const (
		volumes = 40
		serve   = 20 * time.Millisecond // one request, on the disk
		wait    = 500 * time.Millisecond
	)
	var names []string
	for i := range volumes {
		names = append(names, fmt.Sprintf("v%02d", i))
	}
	r := newRig(t, 4*twinRegion, 256<<20, names...)
	r.settle()
	r.saveAndClean()
	for _, name := range names {
		r.write(name, twinRegion, 4096)
	}
	var disk sync.Mutex
	r.ss.mu.Lock()
	set(r.ss, func(string, int64) {
		disk.Lock()
		defer disk.Unlock()
		time.Sleep(serve)
	})
	r.ss.mu.Unlock()
	r.opts.CopyReadWait = wait
	r.crash()
	var hung []string
	for _, name := range names {
		if p := r.pair(name); p.State == Suspended {
			hung = append(hung, name)
		}
	}
	if len(hung) != 0 {
		t.Fatalf("%d %s of %v each, served one at a time, CopyReadWait %v: the start suspended %d pairs whose %s were queued: %v",
			volumes, what, serve, wait, len(hung), what, hung)
	}
}
