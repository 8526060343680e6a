package subsystem

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
	"duplex/sidefile"
	"duplex/timer"
	"duplex/volume"
)

// writeHeldByAHungLease opens a subsystem of one volume v0 whose common
// timer's lease is on a disk that stops answering, moves the clock past
// the lease's mark and starts a 4 KiB write at 0, which then holds the
// ordering lock while its stamp waits for the lease's write. It returns
// once LeaseHung(wait) says so, with its timer, the write's result
// channel and the function that lets the disk answer (also called at the
// test's end).
func writeHeldByAHungLease(t *testing.T, wait time.Duration) (s *Subsystem, tm *timer.Timer, wrote <-chan error, release func()) {
	t.Helper()
	dir := t.TempDir()
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 5, 22, 0, 0, 0, time.UTC).UnixNano())
	fs := disk.NewInjector(nil)
	if err := os.MkdirAll(filepath.Join(dir, "lease"), 0o755); err != nil {
		t.Fatal(err)
	}
	var err error
	tm, err = timer.OpenPersistent(fs, filepath.Join(dir, "lease", "timer.json"), clock.Load, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := volume.Open(filepath.Join(dir, "v0.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	s = New("s1", tm, sidefile.New(64<<20), map[string]*volume.Volume{"v0": v}, []string{"v0"})
	held := make(chan struct{})
	release = sync.OnceFunc(func() { close(held) })
	t.Cleanup(release)
	fs.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(dir, "lease"), Hang: held})
	clock.Add(int64(2 * time.Second))
	w := make(chan error, 1)
	go func() { w <- s.Write(context.Background(), "v0", make([]byte, 4096), 0) }()
	for end := time.Now().Add(10 * time.Second); s.LeaseHung(wait) == nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("LeaseHung has not said the lease hung 10 s after its disk stopped answering")
		}
	}
	return s, tm, w, release
}
