package subsystem

import (
	"context"
	"errors"
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

// TestAStampGivenUpForAHungLeaseHandsNoneOut: as
// TestAMarkGivenUpForAHungLeaseCapturesNothing, for StampWithin, the
// stamp the pair manager takes in a failed marker's stead: with a write
// holding the ordering lock while its stamp waits for the lease, it is
// given up after about the wait, a LeaseHungError; once the disk answers,
// it is handed out after the write's.
func TestAStampGivenUpForAHungLeaseHandsNoneOut(t *testing.T) {
	dir := t.TempDir()
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 5, 22, 0, 0, 0, time.UTC).UnixNano())
	fs := disk.NewInjector(nil)
	if err := os.MkdirAll(filepath.Join(dir, "lease"), 0o755); err != nil {
		t.Fatal(err)
	}
	tm, err := timer.OpenPersistent(fs, filepath.Join(dir, "lease", "timer.json"), clock.Load, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := volume.Open(filepath.Join(dir, "v0.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	s := New("s1", tm, sidefile.New(64<<20), map[string]*volume.Volume{"v0": v}, []string{"v0"})
	held := make(chan struct{})
	release := sync.OnceFunc(func() { close(held) })
	defer release()
	fs.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(dir, "lease"), Hang: held})
	clock.Add(int64(2 * time.Second))
	wrote := make(chan error, 1)
	go func() { wrote <- s.Write(context.Background(), "v0", make([]byte, 4096), 0) }()
	const wait = 200 * time.Millisecond
	for end := time.Now().Add(10 * time.Second); s.LeaseHung(wait) == nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("LeaseHung has not said the lease hung 10 s after its disk stopped answering")
		}
	}
	start := time.Now()
	_, err = s.StampWithin(wait)
	var lh *timer.LeaseHungError
	if !errors.As(err, &lh) {
		t.Fatalf("StampWithin, the lease hung: %v, want a LeaseHungError", err)
	}
	if took := time.Since(start); took > wait+2*time.Second {
		t.Errorf("StampWithin given up after %s, want about %s", took, wait)
	}
	release()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	written := tm.Last()
	ts, err := s.StampWithin(wait)
	if err != nil || ts <= written {
		t.Fatalf("StampWithin once the disk answered: %d, %v; want a stamp after the write's (at or before %d)", ts, err, written)
	}
}
