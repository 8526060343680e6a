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

// TestPromptAndWriteNowDoNotWaitForAHungLease: the NBD server asks Prompt
// and serves WriteNow on the goroutine that reads its connection, so
// neither may wait for long. With the lease's disk hung, a write holds the
// ordering lock while its stamp waits for the lease's mark: Prompt says no
// at once, and WriteNow captures nothing and says it would wait, rather
// than hold up the connection's reads until the disk answers.
func TestPromptAndWriteNowDoNotWaitForAHungLease(t *testing.T) {
	dir := t.TempDir()
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 6, 17, 0, 0, 0, time.UTC).UnixNano())
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
	for end := time.Now().Add(10 * time.Second); s.LeaseHung(100*time.Millisecond) == nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("LeaseHung has not said the lease hung 10 s after its disk stopped answering")
		}
	}

	type answer struct {
		yes bool
		err error
	}
	asked := make(chan answer, 2)
	go func() { asked <- answer{yes: s.Prompt("v0", 64<<10, 4096)} }()
	go func() {
		wait, err := s.WriteNow("v0", make([]byte, 4096), 128<<10)
		asked <- answer{yes: !wait, err: err}
	}()
	for range 2 {
		select {
		case a := <-asked:
			if a.yes || a.err != nil {
				t.Errorf("the lease hung: Prompt or WriteNow said the write would not wait (%v)", a.err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Prompt or WriteNow waited 2 s for the lease's hung disk")
		}
	}
	release()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if !s.Prompt("v0", 64<<10, 4096) {
		t.Error("the lease's disk answered: Prompt says a write would wait")
	}
}
